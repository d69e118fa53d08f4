"""Bad input to `orchzip build`, `inspect` and `run`: each case one clean line and exit code 2.

Builder cases are folders made in ``tmp_path`` (links, credentials, encodings, sizes); zip
cases are zips written byte by byte as another tool could (encrypted, duplicate names).
Every refused build writes no zip.
"""

import os
import zipfile

import pytest

from test_bad_input_cli import assert_clean_refusal, run_cli

pytestmark = pytest.mark.timeout(180)

GITHUB_TOKEN = "ghp_" + "Zk4q9TmB2xW7vLr5Np8Hs3Jd6Fc1Ga0Ye4Ub"
GOOGLE_KEY = "AIza" + "SyD8x2Qv7Lp0Zt5Rm3Nk9Wc4Hb6Jf1Ue2Yi"
NPM_TOKEN = "npm_" + "Qw8Er7Ty6Ui5Op4As3Df2Gh1Jk0Lz9Xc8Vb7N"
AWS_KEY_ID = "AKIA" + "QX7RZ2LM5NB4TY6W"


def write(folder, name, data):
    path = os.path.join(folder, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(data if isinstance(data, bytes) else data.encode())


def link_outside(folder):
    os.symlink("/etc/passwd", os.path.join(folder, "passwd"))


def many_files(folder):
    for i in range(10_001):
        write(folder, f"data/{i:05}.txt", "")


def sparse_giant(folder):
    with open(os.path.join(folder, "giant.bin"), "wb") as fh:
        fh.truncate((1 << 30) + 1)


BUILD_CASES = [
    ("link outside the folder", link_outside, "passwd: refused, a link to a file outside the folder", "root:"),
    (".npmrc token", {".npmrc": f"//registry.npmjs.org/:_authToken={NPM_TOKEN}\n"},
     ".npmrc: refused, line 1 holds what looks like a secret (NPM tokens)", NPM_TOKEN),
    (".aws/credentials", {".aws/credentials": f"[default]\naws_access_key_id = {AWS_KEY_ID}\n"},
     ".aws/credentials: refused, an AWS credentials file", AWS_KEY_ID),
    ("aws key in code", {"settings.py": f"KEY_ID = '{AWS_KEY_ID}'\n"}, "(AWS Access Key)", AWS_KEY_ID),
    ("github token in code", {"config.py": f"TOKEN = '{GITHUB_TOKEN}'\n"},
     "config.py: refused, line 1 holds what looks like a secret (GitHub Token)", GITHUB_TOKEN),
    ("google api key in json", {"conf/app.json": '{"maps": {"key": "%s"}}\n' % GOOGLE_KEY},
     "conf/app.json: refused, line 1 holds what looks like a secret (Google API Key)", GOOGLE_KEY),
    ("pem key", {"certs/client.pem": "-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJB\n-----END RSA PRIVATE KEY-----\n"},
     "certs/client.pem: refused, it holds a PEM private key", "MIIBOgIBAAJB"),
    ("requirements latin-1", {"requirements.txt": b"pandas==2.0.3  # caf\xe9\n"},
     "requirements.txt: is not UTF-8 text; save it as UTF-8", None),
    ("requirements utf-16", {"requirements.txt": "pandas==2.0.3\n".encode("utf-16")},
     "requirements.txt: is UTF-16 text", None),
    ("file name not utf-8", {b"caf\xe9.txt": "x"}, "caf\\xe9.txt: refused, the name is not UTF-8", None),
    ("main.py with null bytes", {"main.py": b"print(1)\x00\n"}, "main.py: does not parse as Python 3.10", None),
    ("ignore file not utf-8", {".orchzipignore": b"caf\xe9/\n"}, ".orchzipignore: is not UTF-8 text", None),
    ("more entries than inspect takes", many_files, "10,002 files are more than a zip may hold (10,000 entries", None),
    ("more bytes than run unpacks", sparse_giant, "more than a zip may unpack to (1,073,741,824", None),
    ("compression ratio inspect refuses", {"zeros.csv": b"0," * 10_000_000}, "refused, it inflates past", None),
]


@pytest.mark.parametrize("setup, expect, secret", [c[1:] for c in BUILD_CASES], ids=[c[0] for c in BUILD_CASES])
def test_build_refuses_in_one_line_and_writes_nothing(tmp_path, setup, expect, secret):
    folder = tmp_path / "orch"
    folder.mkdir()
    write(folder, "main.py", "print('hello')\n")
    if callable(setup):
        setup(str(folder))
    else:
        for name, data in setup.items():
            if isinstance(name, bytes):
                with open(os.path.join(os.fsencode(folder), name), "wb") as fh:
                    fh.write(data.encode())
            else:
                write(folder, name, data)
    result = run_cli(tmp_path / "state", tmp_path, "build", str(folder), "-o", str(tmp_path / "dist"))
    assert_clean_refusal(result, expect, secret=secret)
    assert not (tmp_path / "dist" / "orch.zip").exists()


def test_build_takes_bom_links_inside_and_reports_what_it_leaves_out(tmp_path):
    folder = tmp_path / "orch"
    folder.mkdir()
    write(folder, "main.py", "\ufeffimport orchzip_shim\nprint('hello')\n")
    write(folder, "requirements.txt", "\ufeffpandas==2.0.3\n")
    write(folder, ".npmrc", "registry=https://registry.npmjs.org/\n")  # no token: fine
    write(folder, "data/inputs.csv", "a,b\n1,2\n")
    os.symlink("data/inputs.csv", folder / "inputs.csv")
    os.symlink(str(tmp_path), folder / "outside")
    os.symlink("missing.txt", folder / "broken.txt")
    os.mkfifo(folder / "pipe")
    result = run_cli(tmp_path / "state", tmp_path, "build", str(folder), "-o", str(tmp_path / "dist"))
    assert result.returncode == 0, result.stderr
    warnings = sorted(result.stderr.strip().splitlines())
    assert warnings == [
        "orchzip: warning: broken.txt: left out, a broken link",
        "orchzip: warning: outside/: left out, a link to a folder; links to folders are not followed (copy it in)",
        "orchzip: warning: pipe: left out, not a regular file (a socket, pipe or device)",
    ]
    with zipfile.ZipFile(tmp_path / "dist" / "orch.zip") as archive:
        names = archive.namelist()
        assert archive.read("inputs.csv") == b"a,b\n1,2\n" and ".npmrc" in names
        assert "orchzip_shim/__init__.py" in names  # the BOM did not hide the shim import
        assert archive.read("requirements.txt").startswith(b"\xef\xbb\xbf")


def test_allow_secret_still_ships_a_flagged_file(tmp_path):
    folder = tmp_path / "orch"
    folder.mkdir()
    write(folder, "main.py", "print('hello')\n")
    write(folder, ".npmrc", f"//registry.npmjs.org/:_authToken={NPM_TOKEN}\n")
    result = run_cli(tmp_path / "state", tmp_path, "build", str(folder), "-o", str(tmp_path / "dist"),
                     "--allow-secret", ".npmrc")
    assert result.returncode == 0, result.stderr


# -- zips from elsewhere: inspect and run refuse them alike ---------------------------------
def encrypted_zip(path):
    """A zip whose entry is marked encrypted (bit 0 of the flags, as `zip -e` sets it)."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("main.py", b"\x00" * 12 + b"print('secret')\n")
    patch_headers(path, lambda data, at: data.__setitem__(slice(at, at + 2), bytes([data[at] | 1, data[at + 1]])),
                  local_offset=6, central_offset=8)


def patch_headers(path, change, local_offset, central_offset):
    """Apply ``change(data, offset)`` to the field at the offsets of the local and central headers."""
    with open(path, "r+b") as fh:
        data = bytearray(fh.read())
        change(data, local_offset)
        change(data, data.rfind(b"PK\x01\x02") + central_offset)
        fh.seek(0)
        fh.write(data)


def duplicate_zip(path):
    with pytest.warns(UserWarning), zipfile.ZipFile(path, "w") as archive:
        archive.writestr("main.py", "print('first')\n")
        archive.writestr("main.py", "import os; os.system('echo second')\n")


def corrupt_zip(path):
    with open(path, "wb") as fh:
        fh.write(b"PK\x03\x04 not really a zip")


def unknown_method_zip(path):
    """Compression method 99 (WinZip AES), which Python's zipfile cannot read."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("main.py", "print('hi')\n")
    patch_headers(path, lambda data, at: data.__setitem__(slice(at, at + 2), (99).to_bytes(2, "little")),
                  local_offset=8, central_offset=10)


ZIP_CASES = [
    ("encrypted entry", encrypted_zip, "entry 'main.py' is encrypted"),
    ("duplicate names", duplicate_zip, "entry 'main.py' appears twice"),
    ("not a zip", corrupt_zip, "not a readable zip file"),
    ("unknown compression method", unknown_method_zip, "entry 'main.py' cannot be read"),
]


@pytest.mark.parametrize("command", ["inspect", "run"])
@pytest.mark.parametrize("make, expect", [c[1:] for c in ZIP_CASES], ids=[c[0] for c in ZIP_CASES])
def test_inspect_and_run_refuse_zips_they_cannot_trust(tmp_path, command, make, expect):
    path = tmp_path / "orch.zip"
    make(str(path))
    argv = [command, str(path)] + (["--no-env"] if command == "run" else [])
    assert_clean_refusal(run_cli(tmp_path / "state", tmp_path, *argv), expect)
