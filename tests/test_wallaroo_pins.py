"""Task environments under a wallaroo SDK release's pins, read from PyPI with real uv.

Slow parts are shared: one environment cache for the session, holding one environment per
SDK version for the requirements of houseprice_local (every test here uses them).
"""

import json
import os
import textwrap

import pytest

from conftest import REPO, XTEST_1K, RF_MODEL
from orchzip.runtime import wallaroo_pins
from orchzip.runtime.environments import ensure_environment, find_task_python, uv_binary
from orchzip.runtime.wallaroo_pins import IndexUnreachable, SdkPins, direct_conflicts, sdk_pins

HOUSEPRICE_LOCAL = os.path.join(REPO, "orchestrations", "houseprice_local")
with open(os.path.join(HOUSEPRICE_LOCAL, "requirements.txt"), encoding="utf-8") as _fh:
    HOUSEPRICE_REQUIREMENTS = _fh.read()
ENV_BUILD_TIMEOUT = 900
# A port nothing listens on: an index there cannot be reached.
UNREACHABLE_INDEX = "http://127.0.0.1:9/simple"

SHOW_VERSIONS = """\
import json, os
import numpy, pandas, pyarrow
context = json.load(open(os.environ["ORCHZIP_CONTEXT"]))
print("VERSIONS " + json.dumps({"pandas": pandas.__version__, "pyarrow": pyarrow.__version__,
      "numpy": numpy.__version__, "wallaroo_version": context["wallaroo_version"]}))
"""


@pytest.fixture(scope="session")
def env_cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("task-envs"))


@pytest.fixture(scope="session")
def environments(env_cache):
    """The houseprice_local environment for each of two SDK releases whose pins differ."""
    return {version: ensure_environment(env_cache, HOUSEPRICE_REQUIREMENTS, wallaroo_version=version)
            for version in ("2024.1.0", "2026.1.3")}


@pytest.fixture
def cli(orchzip_cli, env_cache):
    def run(*argv, timeout=ENV_BUILD_TIMEOUT, env=None):
        return orchzip_cli(*argv, timeout=timeout, env={"ORCHZIP_ENV_CACHE": env_cache, **(env or {})})
    return run


def show_versions_folder(tmp_path, requirements=HOUSEPRICE_REQUIREMENTS):
    folder = tmp_path / "show_versions"
    folder.mkdir()
    (folder / "main.py").write_text(SHOW_VERSIONS)
    (folder / "requirements.txt").write_text(requirements)
    return str(folder)


# -- the pins -------------------------------------------------------------------------------

@pytest.mark.timeout(300)
def test_the_pins_are_the_sdk_wheels_requires_dist_and_are_cached_for_offline_use(env_cache, monkeypatch):
    python = find_task_python()[0]
    new = sdk_pins(env_cache, "2026.1.3", python, uv_binary())
    old = sdk_pins(env_cache, "2024.1.0", python, uv_binary())
    assert str(new.pin("pandas")) == "pandas==2.2.0" and str(old.pin("pandas")) == "pandas==1.3.4"
    assert str(new.pin("pyarrow")) == "pyarrow==14.0.1" and str(old.pin("pyarrow")) == "pyarrow==12.0.1"
    assert str(new.pin("numpy")) == "numpy==1.26.0" and str(old.pin("numpy")) == "numpy==1.22.3"
    assert new.pin("httpx").specifier.contains("0.27.2") and not new.pin("httpx").specifier.contains("0.28.0")
    assert os.path.isfile(os.path.join(env_cache, "wallaroo-sdk", "2026.1.3.json"))
    monkeypatch.setenv("UV_DEFAULT_INDEX", UNREACHABLE_INDEX)  # offline from here on
    assert sdk_pins(env_cache, "2026.1.3", python, uv_binary()).lines == new.lines


@pytest.mark.timeout(120)
def test_an_unreachable_index_with_nothing_cached_says_so_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("UV_DEFAULT_INDEX", UNREACHABLE_INDEX)
    monkeypatch.setenv("UV_CACHE_DIR", str(tmp_path / "empty-uv-cache"))
    with pytest.raises(IndexUnreachable) as caught:
        sdk_pins(str(tmp_path / "envs"), "2026.1.3", find_task_python()[0], uv_binary())
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"cannot reach the package index {UNREACHABLE_INDEX} (")
    assert "wallaroo 2026.1.3's metadata is not cached yet" in message


def test_a_requirement_against_an_sdk_pin_is_one_line_naming_both():
    pins = SdkPins("2026.1.3", ["pandas==2.2.0", "httpx<0.28.0,>=0.20.0", "numpy==1.26.0",
                                "openai==1.78.1; extra == 'llm'"])
    lines = ["pandas==1.5.3", "httpx==0.28.1", "numpy>=1.24", "requests==2.32.3", "openai==1.0.0", "pandas>=2.3"]
    assert direct_conflicts(lines, pins, "3.10.13") == [
        "pandas==1.5.3 conflicts with wallaroo 2026.1.3's pandas==2.2.0",
        "httpx==0.28.1 conflicts with wallaroo 2026.1.3's httpx<0.28.0,>=0.20.0",
        "pandas>=2.3 conflicts with wallaroo 2026.1.3's pandas==2.2.0",
    ]
    assert pins.pin("openai") is None  # an extra's requirement is not in the task image


# -- the environments -----------------------------------------------------------------------

@pytest.mark.timeout(ENV_BUILD_TIMEOUT)
def test_two_sdk_versions_give_two_environments_with_their_pinned_packages(environments):
    old, new = environments["2024.1.0"], environments["2026.1.3"]
    assert old.path != new.path and old.key != new.key
    assert "wallaroo2024.1.0" in os.path.basename(old.path) and "wallaroo2026.1.3" in os.path.basename(new.path)
    for env, pandas, pyarrow, numpy in ((old, "1.3.4", "12.0.1", "1.22.3"), (new, "2.2.0", "14.0.1", "1.26.0")):
        with open(os.path.join(env.path, "orchzip-env.json"), encoding="utf-8") as fh:
            marker = json.load(fh)
        assert marker["wallaroo"] == env.wallaroo_version and f"pandas=={pandas}" in marker["pins"]
        site = os.listdir(os.path.join(env.path, "lib", "python3.10", "site-packages"))
        for dist in (f"pandas-{pandas}.dist-info", f"pyarrow-{pyarrow}.dist-info", f"numpy-{numpy}.dist-info"):
            assert dist in site
        assert not [n for n in site if n.lower().startswith("wallaroo")]  # the stand-in plays the SDK


@pytest.mark.timeout(ENV_BUILD_TIMEOUT)
@pytest.mark.parametrize("version, pandas, pyarrow, numpy", [
    ("2024.1.0", "1.3.4", "12.0.1", "1.22.3"),
    ("2026.1.3", "2.2.0", "14.0.1", "1.26.0"),
])
def test_a_conflict_free_zips_task_sees_the_sdks_pinned_versions(cli, environments, tmp_path,
                                                                 version, pandas, pyarrow, numpy):
    result = cli("run", show_versions_folder(tmp_path), "--wallaroo-version", version)
    assert result.code == 0, result
    line = next(line for line in result.out.splitlines() if line.startswith("VERSIONS "))
    assert json.loads(line[len("VERSIONS "):]) == {
        "pandas": pandas, "pyarrow": pyarrow, "numpy": numpy, "wallaroo_version": version}
    assert os.path.basename(environments[version].path) in result.out  # the shared one, cached


@pytest.mark.timeout(ENV_BUILD_TIMEOUT)
@pytest.mark.parametrize("version", ["2024.1.0", "2026.1.3"])
def test_the_shim_runs_houseprice_local_on_each_releases_pyarrow_and_pandas(cli, environments, tmp_path, version):
    results_db = str(tmp_path / "results.duckdb")
    assert cli("connections", "create", "houseprice_inputs", "--type", "FILE",
               "--details", json.dumps({"path": XTEST_1K})).code == 0
    assert cli("connections", "create", "houseprice_results", "--type", "DUCKDB",
               "--details", json.dumps({"path": results_db, "table": "results"})).code == 0
    assert cli("pipelines", "create", "houseprice", "--model", RF_MODEL).code == 0
    result = cli("run", HOUSEPRICE_LOCAL, "--wallaroo-version", version, "--arg", "batch_size=300", "--json")
    assert result.code == 0, result
    run = result.json()
    assert run["status"] == "success" and run["rows_written"] == 1000, run
    import duckdb
    with duckdb.connect(results_db, read_only=True) as db:
        columns = [row[0] for row in db.execute("DESCRIBE results").fetchall()]
    # The sink renamed in.tensor -> in_tensor: RecordBatch.rename_columns is not in pyarrow 12/14.
    assert "in_tensor" in columns and "out_variable" in columns


def test_an_unknown_wallaroo_version_is_refused_before_anything_runs(cli, tmp_path):
    result = cli("run", show_versions_folder(tmp_path), "--wallaroo-version", "2019.1.0", timeout=60)
    assert result.code == 2
    assert "invalid choice: '2019.1.0'" in result.err and "2026.1.3" in result.err


# -- build --check, inspect, upload ---------------------------------------------------------

def folder_with(tmp_path, requirements, name="orch"):
    folder = tmp_path / name
    folder.mkdir()
    (folder / "main.py").write_text("print('hello')\n")
    (folder / "requirements.txt").write_text(requirements)
    return str(folder)


@pytest.mark.timeout(300)
def test_build_check_refuses_requirements_that_conflict_with_the_sdk_one_line_each(cli, tmp_path):
    folder = folder_with(tmp_path, "pandas==1.5.3\nhttpx==0.28.1\nrequests==2.32.3\n")
    out = tmp_path / "dist"
    new = cli("build", folder, "-o", str(out), "--check")
    assert new.code == 2, new
    assert new.err.splitlines()[1:] == [
        "  requirements.txt: pandas==1.5.3 conflicts with wallaroo 2026.1.3's pandas==2.2.0",
        "  requirements.txt: httpx==0.28.1 conflicts with wallaroo 2026.1.3's httpx<0.28.0,>=0.20.0",
    ]
    old = cli("build", folder, "-o", str(out), "--check", "--wallaroo-version", "2024.1.0")
    assert old.code == 2 and "requests==2.32.3 conflicts with wallaroo 2024.1.0's requests==2.25.1" in old.err
    assert "Traceback" not in new.err + old.err
    assert not out.exists() or not os.listdir(out)  # nothing written
    assert cli("build", folder, "-o", str(out)).code == 0  # without --check: only validated


@pytest.mark.timeout(300)
def test_build_check_refuses_a_conflict_through_the_sdks_own_dependencies(cli, tmp_path):
    # wallaroo 2026.1.3 pins pydantic==2.11.7, which pins pydantic-core==2.33.2.
    result = cli("build", folder_with(tmp_path, "pydantic-core==2.20.0\n"), "-o", str(tmp_path / "dist"), "--check")
    assert result.code == 2, result
    message = result.err.strip()
    assert "\n" not in message
    assert "requirements.txt: cannot be installed beside wallaroo 2026.1.3: Because" in message
    assert "pydantic-core==2.33.2" in message and "pydantic-core==2.20.0" in message


@pytest.mark.timeout(300)
def test_build_check_and_inspect_show_the_versions_the_task_would_get(cli, tmp_path):
    folder = folder_with(tmp_path, "duckdb==1.4.2\n")
    built = cli("build", folder, "-o", str(tmp_path / "dist"), "--check", "--json")
    assert built.code == 0, built
    environment = built.json()["environment"]
    assert environment["ok"] and environment["wallaroo_version"] == "2026.1.3"
    assert {k: environment["versions"][k] for k in ("pandas", "pyarrow", "duckdb")} == {
        "pandas": "2.2.0", "pyarrow": "14.0.1", "duckdb": "1.4.2"}
    zip_path = built.json()["zip"]
    shown = cli("inspect", zip_path, "--wallaroo-version", "2024.1.0")
    assert shown.code == 0, shown
    assert ("  task environment (wallaroo 2024.1.0): pandas 1.3.4, pyarrow 12.0.1, numpy 1.22.3, duckdb 1.4.2 and"
            in shown.out)
    assert "environment" not in cli("inspect", zip_path, "--no-resolve", "--json").json()


@pytest.mark.timeout(300)
def test_upload_refuses_a_conflicting_zip_before_sending_it(cli, tmp_path):
    folder = folder_with(tmp_path, "numpy==2.1.0\n")
    # Nothing listens there: the refusal must come before any request.
    env = {"WALLAROO_URL": "http://127.0.0.1:9", "WALLAROO_TOKEN": "not-a-real-token"}
    result = cli("upload", folder, "--workspace-id", "1", env=env)
    assert result.code == 2, result
    assert "not uploading orch.zip: its requirements.txt cannot be installed beside wallaroo 2026.1.3 (1):" in result.err
    assert "numpy==2.1.0 conflicts with wallaroo 2026.1.3's numpy==1.26.0" in result.err
    assert "not-a-real-token" not in result.err


def test_a_scheduled_task_keeps_the_wallaroo_version_it_was_scheduled_for(cli, tmp_path):
    result = cli("schedule", show_versions_folder(tmp_path), "--cron", "0 3 * * *", "--no-env",
                 "--wallaroo-version", "2024.1.0", "--json", timeout=120)
    assert result.code == 0, result
    task_id = result.json()["id"]
    assert result.json()["wallaroo_version"] == "2024.1.0"
    listed = cli("tasks", "list", "--json", timeout=60, env={"ORCHZIP_WALLAROO_VERSION": "2026.1.3"})
    assert listed.code == 0, listed
    assert [t["wallaroo_version"] for t in listed.json() if t["id"] == task_id] == ["2024.1.0"]


def test_a_projects_orchzip_yaml_sets_its_wallaroo_version_and_the_environment_variable_wins(orchzip_cli, tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "orchzip.yaml").write_text('version: 1\nwallaroo_version: "2024.1.0"\n')
    folder = show_versions_folder(project)

    def seen(env=None):
        result = orchzip_cli("run", folder, "--no-env", cwd=str(project), env=env, timeout=120)
        assert result.code == 0, result
        line = next(line for line in result.out.splitlines() if line.startswith("VERSIONS "))
        return json.loads(line[len("VERSIONS "):])["wallaroo_version"]

    assert seen() == "2024.1.0"
    assert seen({"ORCHZIP_WALLAROO_VERSION": "2026.1.3"}) == "2026.1.3"
    (project / "orchzip.yaml").write_text("version: 1\nwallaroo_version: '1999.1'\n")
    refused = orchzip_cli("run", folder, "--no-env", cwd=str(project), timeout=120)
    assert refused.code == 2
    assert refused.err.strip().startswith(f"orchzip: error: unknown Wallaroo version '1999.1' in {project / 'orchzip.yaml'};")
