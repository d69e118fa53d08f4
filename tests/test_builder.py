"""The builder: byte-identical zips, validation, secrets, untrusted zips, Python 3.10."""

import hashlib
import json
import os
import random
import shutil
import stat
import subprocess
import sys
import zipfile

import pytest

from orchzip.builder import InvalidOrchestration, Limits, UnsafeZip, build, inspect_zip, safe_extract

from conftest import PYTHON310, REPO

HOUSEPRICE_LOCAL = os.path.join(REPO, "orchestrations", "houseprice_local")
HOUSEPRICE_BIGQUERY = os.path.join(REPO, "orchestrations", "houseprice_bigquery")


def sha256(path):
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def make_folder(path, files):
    for name, content in files.items():
        target = path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def simple_orchestration(tmp_path, **extra):
    files = {"main.py": "import orchzip_shim\nprint('hi')\n", "requirements.txt": "requests==2.32.3\n",
             "lib/helpers.py": "X = 1\n", "data/table.csv": "a,b\n1,2\n"}
    files.update(extra)
    return make_folder(tmp_path / "orch", files)


def test_two_builds_in_other_places_with_other_mtimes_and_umask_are_byte_identical(tmp_path):
    first = simple_orchestration(tmp_path / "one")
    (first / "__pycache__").mkdir()
    (first / "__pycache__" / "main.cpython-311.pyc").write_bytes(b"junk")
    a = build(first, tmp_path / "out1")
    # The same files, copied elsewhere under another umask, with shuffled mtimes.
    second = tmp_path / "two" / "orch"
    script = (
        "import os, shutil, sys; os.umask(0o077); "
        f"shutil.copytree({str(first)!r}, {str(second)!r}, ignore=shutil.ignore_patterns('__pycache__'))"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    for root, _, files in os.walk(second):
        for name in files:
            t = random.randint(10**8, 2 * 10**9)
            os.utime(os.path.join(root, name), (t, t))
    (second / ".DS_Store").write_bytes(b"finder junk")
    (second / ".git").mkdir()
    (second / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    venv = second / "venv"
    venv.mkdir()
    (venv / "pyvenv.cfg").write_text("home = /usr\n")
    b = build(second, tmp_path / "out2")
    assert a.sha256 == b.sha256 == sha256(b.zip_path)
    names = zipfile.ZipFile(b.zip_path).namelist()
    assert not [n for n in names if "pycache" in n or ".git" in n or "venv" in n or "DS_Store" in n]
    assert names == sorted(names[:-1]) + ["orchzip.json"]


def test_source_date_epoch_sets_the_timestamp(tmp_path, monkeypatch):
    folder = simple_orchestration(tmp_path)
    a = build(folder, tmp_path / "a")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    b = build(folder, tmp_path / "b")
    assert a.sha256 != b.sha256
    info = zipfile.ZipFile(b.zip_path).getinfo("main.py")
    assert info.date_time[:3] == (2023, 11, 14)
    assert stat.S_IMODE(info.external_attr >> 16) == 0o644
    assert b.manifest["build_time"].startswith("2023-11-14")


def test_manifest_and_vendored_shim(tmp_path):
    result = build(simple_orchestration(tmp_path), tmp_path / "out")
    info = inspect_zip(result.zip_path)
    assert info["sha256"] == result.sha256 and info["size"] == os.path.getsize(result.zip_path)
    manifest = info["manifest"]
    assert manifest["entry_point"] == "main.py" and manifest["shim_vendored"] is True
    assert manifest["requirements"] == ["requests==2.32.3"]
    names = [e["name"] for e in info["entries"]]
    assert "orchzip_shim/__init__.py" in names and "orchzip_shim/connectors/duckdb_connector.py" in names


def test_no_shim_is_vendored_when_nothing_imports_it(tmp_path):
    folder = make_folder(tmp_path / "plain", {"main.py": "import wallaroo\nprint(wallaroo.Client().task_args())\n"})
    result = build(folder, tmp_path / "out")
    assert not [n for n in zipfile.ZipFile(result.zip_path).namelist() if n.startswith("orchzip_shim/")]
    assert result.manifest["shim_vendored"] is False


@pytest.mark.parametrize("files, fragment", [
    ({"run.py": "print(1)\n"}, "main.py: missing"),
    ({"main.py": "try:\n    pass\nexcept* ValueError:\n    pass\n"}, "main.py:4: does not parse as Python 3.10"),
    ({"main.py": "x = 1\n", "lib/new.py": "type Alias = int\n"}, "lib/new.py:1: does not parse"),
    ({"main.py": "x = 1\n", "requirements.txt": "pandas==2.0\nnot a valid requirement!!\n"}, "requirements.txt:2: not a valid requirement"),
    ({"main.py": "x = 1\n", "requirements.txt": "wallaroo==2023.2.1\n"}, "requirements.txt:1: remove 'wallaroo'"),
    ({"main.py": "x = 1\n", "requirements.txt": "pandas==2.0\nPandas==2.0\n"}, "requirements.txt:2: Pandas repeats line 1"),
    ({"main.py": "x = 1\n", "requirements.txt": "pandas==2.0\npandas>=2.1\n"}, "requirements.txt:2: pandas conflicts with line 1"),
    ({"main.py": "x = 1\n", "requirements.txt": "-e ../mylib\n"}, "requirements.txt:1: option '-e' is not allowed"),
    ({"main.py": "x = 1\n", "requirements.txt": "", "sub/requirements.txt": ""}, "at most one requirements.txt"),
])
def test_each_validation_error_names_the_file_and_line(tmp_path, files, fragment):
    folder = make_folder(tmp_path / "bad", files)
    with pytest.raises(InvalidOrchestration) as caught:
        build(folder, tmp_path / "out")
    assert fragment in str(caught.value)
    assert not (tmp_path / "out").exists() or not os.listdir(tmp_path / "out")


def test_every_problem_is_reported_at_once(tmp_path):
    folder = make_folder(tmp_path / "bad", {"main.py": "def (:\n", "requirements.txt": "wallaroo\n", ".env": "A=1\n"})
    with pytest.raises(InvalidOrchestration) as caught:
        build(folder, tmp_path / "out")
    assert "3 problems" in str(caught.value)


def test_unpinned_requirements_warn_and_strict_refuses(tmp_path):
    folder = make_folder(tmp_path / "o", {"main.py": "x = 1\n", "requirements.txt": "# comment\nrequests>=2\n\npandas==2.2.3\n"})
    result = build(folder, tmp_path / "out")
    assert len(result.warnings) == 1 and "requirements.txt:2: requests is not pinned" in result.warnings[0]
    with pytest.raises(InvalidOrchestration, match="an error with --strict"):
        build(folder, tmp_path / "out2", strict=True)


def test_a_zip_over_the_size_limit_is_refused(tmp_path):
    folder = make_folder(tmp_path / "o", {"main.py": "x = 1\n", "blob.bin": os.urandom(50_000)})
    with pytest.raises(InvalidOrchestration, match="over the size limit of 10,000"):
        build(folder, tmp_path / "out", max_size=10_000)
    assert not os.path.exists(tmp_path / "out" / "o.zip")


SERVICE_ACCOUNT = json.dumps({"type": "service_account", "project_id": "p", "private_key_id": "k",
                              "private_key": "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n",
                              "client_email": "x@p.iam.gserviceaccount.com"})


@pytest.mark.parametrize("name, content, reason", [
    ("keys/sa.json", SERVICE_ACCOUNT, "Google service-account key"),
    ("server.pem", "-----BEGIN RSA PRIVATE KEY-----\nabc\n-----END RSA PRIVATE KEY-----\n", "PEM private key"),
    ("notes.txt", "-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n", "PEM private key"),
    (".env", "TOKEN=abc\n", "environment file"),
    (".env.production", "TOKEN=abc\n", "environment file"),
    ("cert.p12", b"\x30\x82", "PKCS#12"),
    ("id_rsa", "key", "SSH private key"),
    ("token.json", '{"access_token": "x"}', "token file"),
    (".netrc", "machine x login y password z\n", ".netrc"),
])
def test_credential_files_are_refused_unless_allowed_by_name(tmp_path, name, content, reason):
    folder = simple_orchestration(tmp_path, **{name: content})
    with pytest.raises(InvalidOrchestration) as caught:
        build(folder, tmp_path / "out")
    assert f"{name}: refused" in str(caught.value) and reason in str(caught.value)
    result = build(folder, tmp_path / "out", allow_secrets=[name])
    assert name in zipfile.ZipFile(result.zip_path).namelist()


def test_public_keys_and_certificates_are_not_secrets(tmp_path):
    folder = simple_orchestration(tmp_path, **{"id_rsa.pub": "ssh-rsa AAAA", "ca.pem": "-----BEGIN CERTIFICATE-----\nabc\n"})
    build(folder, tmp_path / "out")


def test_orchzipignore_excludes_files_with_gitignore_syntax(tmp_path):
    folder = simple_orchestration(tmp_path, **{
        ".orchzipignore": "data/\n*.log\n!keep.log\n/secret.json\n",
        "run.log": "x", "keep.log": "y", "secret.json": SERVICE_ACCOUNT, "sub/secret.json": "{}",
    })
    names = zipfile.ZipFile(build(folder, tmp_path / "out").zip_path).namelist()
    assert "keep.log" in names and "sub/secret.json" in names
    assert not {"run.log", "secret.json", "data/table.csv", ".orchzipignore"} & set(names)


# -- untrusted zips ------------------------------------------------------------------------

# -- a run of a folder reuses its last zip while nothing in it changed -------------------------
def test_an_unchanged_folder_reuses_its_zip_and_every_change_rebuilds_it(tmp_path):
    from orchzip.builder import build_unless_unchanged
    folder = simple_orchestration(tmp_path)
    out = tmp_path / "builds"
    zip_path = build_unless_unchanged(str(folder), str(out))
    first = os.stat(zip_path)
    assert build_unless_unchanged(str(folder), str(out)) == zip_path
    assert os.stat(zip_path).st_ino == first.st_ino  # the same file: not written again

    def names_and(entry):
        with zipfile.ZipFile(zip_path) as archive:
            return sorted(archive.namelist()), archive.read(entry) if entry in archive.namelist() else None

    helper = folder / "lib" / "helpers.py"
    stamp = os.stat(helper)
    helper.write_text("Y = 2\n")  # same size, and the same mtime put back: only the content tells
    os.utime(helper, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    build_unless_unchanged(str(folder), str(out))
    assert names_and("lib/helpers.py")[1] == b"Y = 2\n"
    (folder / "extra.py").write_text("Z = 3\n")
    build_unless_unchanged(str(folder), str(out))
    assert "extra.py" in names_and("extra.py")[0]
    (folder / ".orchzipignore").write_text("extra.py\n")
    build_unless_unchanged(str(folder), str(out))
    assert "extra.py" not in names_and("extra.py")[0]
    with open(zip_path, "ab") as fh:  # a zip changed on disk is never trusted
        fh.write(b"tampered")
    build_unless_unchanged(str(folder), str(out))
    assert sha256(zip_path) == build(str(folder), str(tmp_path / "fresh")).sha256


def test_a_folder_that_fails_to_build_keeps_failing_and_reuses_nothing(tmp_path):
    from orchzip.builder import build_unless_unchanged
    folder = simple_orchestration(tmp_path)
    out = tmp_path / "builds"
    build_unless_unchanged(str(folder), str(out))
    (folder / "main.py").write_text("print('unclosed'\n")
    for _ in range(2):
        with pytest.raises(InvalidOrchestration, match="main.py"):
            build_unless_unchanged(str(folder), str(out))


def crafted_zip(path, entries, link=None):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries:
            archive.writestr(name, data)
        if link:
            info = zipfile.ZipInfo(link[0])
            info.create_system = 3
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, link[1])
    return str(path)


@pytest.fixture
def bad_zips(tmp_path):
    corrupt = tmp_path / "corrupt.zip"
    good = crafted_zip(tmp_path / "good.zip", [("main.py", "print(1)\n" * 1000)])
    data = bytearray(open(good, "rb").read())
    data[40:80] = b"\xff" * 40  # inside the first entry's compressed bytes
    corrupt.write_bytes(bytes(data))
    return {
        "slip": (crafted_zip(tmp_path / "slip.zip", [("main.py", "x=1"), ("../../evil.py", "x=1")]), "outside the folder"),
        "absolute": (crafted_zip(tmp_path / "abs.zip", [("main.py", "x=1"), ("/tmp/evil.py", "x=1")]), "outside the folder"),
        "link": (crafted_zip(tmp_path / "link.zip", [("main.py", "x=1")], link=("data", "/etc/passwd")), "symbolic link"),
        "bomb": (crafted_zip(tmp_path / "bomb.zip", [("main.py", "x=1"), ("zeros.bin", b"\0" * (64 << 20))]), "zip bomb"),
        "not a zip": (str(make_folder(tmp_path, {"notzip.zip": "hello"}) / "notzip.zip"), "not a readable zip"),
        "corrupt": (str(corrupt), "corrupt"),
    }


@pytest.mark.parametrize("kind", ["slip", "absolute", "link", "bomb", "not a zip", "corrupt"])
def test_unsafe_zips_are_refused_by_extract_and_leave_nothing(bad_zips, tmp_path, kind):
    path, fragment = bad_zips[kind]
    with pytest.raises(UnsafeZip, match=fragment):
        safe_extract(path, tmp_path / "dest" / "work")
    assert not (tmp_path / "dest").exists() or os.listdir(tmp_path / "dest") == []
    assert not (tmp_path / "evil.py").exists()


@pytest.mark.parametrize("kind", ["slip", "link", "bomb", "corrupt"])
def test_unsafe_zips_are_refused_by_inspect_and_run_in_one_line(bad_zips, orchzip_cli, kind):
    path, fragment = bad_zips[kind]
    for argv in (["inspect", path], ["run", path, "--no-env"]):
        result = orchzip_cli(*argv)
        assert result.code != 0, result
        assert "Traceback" not in result.err and fragment in result.err, result
        assert len([l for l in result.err.splitlines() if l.startswith("orchzip: error:")]) == 1


def test_entry_count_and_size_limits_are_configurable(tmp_path):
    path = crafted_zip(tmp_path / "many.zip", [(f"f{i}.py", "x=1") for i in range(30)])
    with pytest.raises(UnsafeZip, match="30 entries"):
        inspect_zip(path, Limits(max_entries=10))
    with pytest.raises(UnsafeZip, match="unpacks to"):
        inspect_zip(path, Limits(max_total_bytes=20))


# -- Python 3.10 ---------------------------------------------------------------------------

@pytest.fixture(scope="session")
def python310_with_pandas_and_pyarrow(tmp_path_factory):
    if not os.path.exists(PYTHON310):
        pytest.fail(f"Python 3.10 is needed at {PYTHON310} (or set ORCHZIP_PYTHON310)")
    venv = tmp_path_factory.mktemp("py310") / "venv"
    uv = shutil.which("uv") or os.path.join(os.path.dirname(sys.executable), "uv")
    env = dict(os.environ, UV_PYTHON_DOWNLOADS="never")
    subprocess.run([uv, "venv", "-q", "--python", PYTHON310, str(venv)], check=True, timeout=120, env=env)
    python = str(venv / "bin" / "python")
    subprocess.run([uv, "pip", "install", "-q", "--python", python, "pandas", "pyarrow"], check=True, timeout=600, env=env)
    return python


@pytest.mark.timeout(600)
@pytest.mark.parametrize("folder", [HOUSEPRICE_LOCAL, HOUSEPRICE_BIGQUERY])
def test_built_zips_compile_and_the_shim_imports_under_python_310(tmp_path, folder, python310_with_pandas_and_pyarrow):
    if not os.path.isdir(folder):
        pytest.fail(f"{folder} is missing")
    result = build(folder, tmp_path / "out")
    work = tmp_path / "work"
    safe_extract(result.zip_path, work)
    py_files = [str(p) for p in work.rglob("*.py")]
    compiled = subprocess.run([PYTHON310, "-m", "py_compile", *py_files], capture_output=True, text=True, timeout=120)
    assert compiled.returncode == 0, compiled.stderr
    code = ("import orchzip_shim, orchzip_shim.context, orchzip_shim.connectors, orchzip_shim.models, "
            "orchzip_shim.connectors.file_connector; import sys; print(sys.version_info[:2])")
    imported = subprocess.run([python310_with_pandas_and_pyarrow, "-c", code], cwd=work,
                              capture_output=True, text=True, timeout=120, env={"PATH": os.environ["PATH"]})
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.strip() == "(3, 10)"
