"""The dashboard over HTTP: a real `orchzip serve` on loopback, a store with 10,000 runs.

Every page and every action, as a browser sends them: sign in through the form, the session
cookie, CSRF tokens on the forms, redirects, and the JSON the run page polls for its log.
"""

import hashlib
import html
import json
import os
import re
import sys

import pytest
import requests

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "serve"))
from serve_helpers import Server, orchzip, wait_for  # noqa: E402

from conftest import EXAMPLE_MODEL  # noqa: E402
from orchzip.runtime.dashboard._queries import display_log  # noqa: E402
from tests.support.run_history import fill_history  # noqa: E402

pytestmark = pytest.mark.timeout(300)

HELLO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "serve", "hello")
HISTORY_RUNS = 10_000
NEVER = "0 0 1 1 *"  # the history's task must not fire while the tests run
CSRF = re.compile(r'name="csrf" value="([0-9a-f]{64})"')
EVIL = "<img src=x onerror=alert(1)>"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    state = tmp_path_factory.mktemp("dashboard") / "state"
    history, counts = fill_history(str(state), HISTORY_RUNS, cron=NEVER)
    orchzip(str(state), "connections", "create", "warehouse", "--type", "BIGQUERY", "--details", json.dumps(
        {"private_key": "-----BEGIN PRIVATE KEY-----SECRETKEY", "client_email": "svc@example.iam", "dataset": "d",
         "token": "${WAREHOUSE_TOKEN}"}))
    orchzip(str(state), "pipelines", "create", "houseprice", "--model", EXAMPLE_MODEL)
    orchzip(str(state), "models", "upload", "house-model", EXAMPLE_MODEL)
    orchzip(str(state), "models", "upload", "house-model", EXAMPLE_MODEL)
    orchzip(str(state), "pipelines", "create", "chained", "--step", "house-model:1", "--step", "house-model:2")
    orchzip(str(state), "run", HELLO, "--no-env", "--name", "hello-fails", "--arg", "fail=boom", check=False)
    orchzip(str(state), "run", HELLO, "--no-env", "--name", f"hello {EVIL}", "--arg", f"note={EVIL}")
    srv = Server(state, state.parent / "serve.log", "--no-env").start()
    srv.history, srv.counts = history, counts
    yield srv
    srv.stop()


def sign_in(server):
    session = requests.Session()
    answer = session.post(server.url + "/ui/login", data={"token": server.token, "next": "/"}, allow_redirects=False,
                          timeout=30)
    assert answer.status_code == 303, answer.text
    return session


@pytest.fixture(scope="module")
def browser(server):
    return sign_in(server)


def get(session, server, path, status=200, **kwargs):
    answer = session.get(server.url + path, timeout=60, allow_redirects=False, **kwargs)
    assert answer.status_code == status, (path, answer.status_code, answer.text[:2000])
    return answer


def csrf_of(page):
    return CSRF.search(page.text).group(1)


def post(session, server, path, csrf, status=303, **fields):
    answer = session.post(server.url + path, data={"csrf": csrf, **fields}, allow_redirects=False, timeout=60)
    assert answer.status_code == status, (path, answer.status_code, answer.text[:2000])
    return answer


def task_named(server, name):
    from orchzip.runtime.store import Store
    store = Store(server.state_dir)
    try:
        return next(t for t in store.list_tasks() if t["name"] == name)
    finally:
        store.close()


def last_run(server, task_id):
    from orchzip.runtime.store import Store
    store = Store(server.state_dir)
    try:
        return store.list_runs(task_id=task_id, limit=1)[0]
    finally:
        store.close()


def text_of(page):
    """The page's text without tags, entities decoded (what a reader sees)."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page.text)).split())


# -- signing in -------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/", "/ui/runs", "/ui/connections", "/ui/pipelines", "/ui/tasks/x", "/ui/runs/x",
                                  "/ui/runs/x/log?offset=0"])
def test_pages_without_a_session_redirect_to_the_sign_in_form(server, path):
    answer = get(requests, server, path, status=303)
    assert answer.headers["location"].startswith("/ui/login?next=")
    form = get(requests, server, answer.headers["location"])
    assert 'type="password"' in form.text and server.token not in form.text


def test_actions_without_a_session_are_refused(server):
    answer = requests.post(server.url + f"/ui/tasks/{server.history['id']}/pause", data={"csrf": "x"},
                           allow_redirects=False, timeout=30)
    assert answer.status_code == 401
    assert not task_named(server, "nightly-scores")["paused"]


def test_the_api_still_needs_its_bearer_token(server):
    assert requests.post(server.url + "/v1/api/workspaces/list", json={}, timeout=30).status_code == 401
    assert server.post("/v1/api/workspaces/list", {}).status_code == 200


def test_a_wrong_token_is_refused_without_a_cookie(server):
    answer = requests.post(server.url + "/ui/login", data={"token": "not-it", "next": "/"}, allow_redirects=False,
                           timeout=30)
    assert answer.status_code == 401 and "set-cookie" not in answer.headers
    assert "orchzip serve --show-token" in answer.text and server.token not in answer.text


def test_signing_in_sets_an_httponly_cookie_that_is_not_the_token(server):
    answer = requests.post(server.url + "/ui/login", data={"token": server.token, "next": "/ui/runs"},
                           allow_redirects=False, timeout=30)
    assert answer.status_code == 303 and answer.headers["location"] == "/ui/runs"
    cookie = answer.headers["set-cookie"]
    assert "httponly" in cookie.lower() and "samesite=lax" in cookie.lower()
    assert server.token not in cookie and server.token not in answer.headers["location"]


@pytest.mark.parametrize("target", ["//evil.example/", "https://evil.example/", "/\\evil.example", "/v1/api/task/list"])
def test_sign_in_never_redirects_off_the_dashboard(server, target):
    answer = requests.post(server.url + "/ui/login", data={"token": server.token, "next": target},
                           allow_redirects=False, timeout=30)
    assert answer.headers["location"] == "/"


def test_signing_out_drops_the_cookie(server):
    session = sign_in(server)
    page = get(session, server, "/")
    post(session, server, "/ui/logout", csrf_of(page))
    assert get(session, server, "/", status=303).headers["location"].startswith("/ui/login")


def test_the_bearer_header_opens_pages_too(server):
    assert get(requests, server, "/ui/runs", headers=server.headers).status_code == 200


def test_pages_carry_a_strict_content_security_policy(browser, server):
    answer = get(browser, server, "/")
    assert "script-src 'self'" in answer.headers["content-security-policy"]
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert "<script src=\"/ui/static/dashboard.js\"" in answer.text
    assert get(browser, server, "/ui/static/dashboard.js").headers["content-type"].startswith(("text/javascript",
                                                                                               "application/javascript"))


# -- pages ------------------------------------------------------------------------------------
def test_task_list_shows_schedule_next_fire_last_status_and_success_rate(browser, server):
    page = text_of(get(browser, server, "/"))
    counts = server.counts
    rate = round(100 * counts["success"] / HISTORY_RUNS)
    row = next(line for line in page.split("nightly-scores")[1:2])
    assert NEVER in row and "UTC" in row and "in " in row  # the schedule, its zone, the next fire
    assert f"{rate}% of 10,000" in row
    assert "3 tasks" in page and "hello-fails" in page
    scheduled = text_of(get(browser, server, "/?kind=scheduled"))
    assert "1 task," in scheduled and "hello-fails" not in scheduled


def test_task_page_of_a_task_with_10000_runs(browser, server):
    task_id, counts = server.history["id"], server.counts
    page = get(browser, server, f"/ui/tasks/{task_id}")
    timeline = re.search(r'<svg class="chart" id="timeline".*?</svg>', page.text, re.S).group(0)
    assert timeline.count('<a href="/ui/runs/') == 200
    assert 'role="img"' in timeline and "<title id=\"timeline-title\">Timeline of the last 200 runs" in timeline
    for chart in ("duration", "rows"):
        assert f'<svg class="chart" id="{chart}"' in page.text
    text = text_of(page)
    assert "Page 1 of 200" in text and f"{HISTORY_RUNS:,} runs, newest first" in text
    assert len(re.findall(r'<td><a href="/ui/runs/[0-9a-f-]+"><code>', page.text)) == 50
    assert get(browser, server, f"/ui/tasks/{task_id}?last=1000").text.count('<a href="/ui/runs/') >= 1000
    last = text_of(get(browser, server, f"/ui/tasks/{task_id}?page=9999"))
    assert "Page 200 of 200" in last


def test_failure_reasons_are_grouped_ignoring_numbers(browser, server):
    page = get(browser, server, f"/ui/tasks/{server.history['id']}").text
    section = page.split('id="failures-h"')[1].split("</table>")[0]
    groups = re.findall(r'<tr><td class="num">([\d,]+)</td><td><span class="badge status-([a-z-]+)">.*?'
                        r'<td class="error">(.*?)</td>', section, re.S)
    by_status = {}
    for count, status, message in groups:
        by_status.setdefault(status, []).append((int(count.replace(",", "")), html.unescape(message)))
    assert [c for c, _ in by_status["timed-out"]] == [server.counts["timed_out"]]
    assert re.fullmatch(r"timed out after \d+ s", by_status["timed-out"][0][1])
    assert len(by_status["failure"]) == 3 and sum(c for c, _ in by_status["failure"]) == server.counts["failure"]
    assert [c for c, _ in by_status["killed"]] == [server.counts["killed"]]


def test_runs_can_be_filtered_by_status(browser, server):
    text = text_of(get(browser, server, f"/ui/tasks/{server.history['id']}?status=killed"))
    assert f"{server.counts['killed']} runs with status killed" in text
    everything = text_of(get(browser, server, "/ui/runs?status=failure&page=2"))
    assert "Page 2 of" in everything and "runs with status failure" in everything
    get(browser, server, "/ui/runs?status=bogus", status=404)


def test_run_page_shows_rows_sha_args_and_log(browser, server):
    task = task_named(server, "hello-fails")
    run = last_run(server, task["id"])
    page = get(browser, server, f"/ui/runs/{run['id']}")
    with open(task["source"], "rb") as fh:
        assert hashlib.sha256(fh.read()).hexdigest() in page.text
    text = text_of(page)
    assert "failing on purpose: boom" in text and '"fail": "boom"' in text and "failure" in text
    history_run = last_run(server, server.history["id"])
    text = text_of(get(browser, server, f"/ui/runs/{history_run['id']}"))
    if history_run["rows_written"] is not None:
        assert f"{history_run['rows_written']:,}" in text


def test_log_endpoint_answers_the_bytes_after_an_offset(browser, server):
    run = last_run(server, task_named(server, "hello-fails")["id"])
    with open(run["log_path"], encoding="utf-8") as fh:
        whole = fh.read()
    first = get(browser, server, f"/ui/runs/{run['id']}/log?offset=0").json()
    assert first["text"] == display_log(whole) and first["run"]["status"] == "failure" and first["done"] is False
    assert re.search(r"^\d\d:\d\d:\d\d ! failing on purpose: boom$", first["text"], re.M)  # stderr, marked
    cut = whole.index("\n") + 1
    rest = get(browser, server, f"/ui/runs/{run['id']}/log?offset={cut}").json()["text"]
    assert rest == display_log(whole[cut:]) and first["text"].endswith(rest) and len(rest) < len(first["text"])
    end = get(browser, server, f"/ui/runs/{run['id']}/log?offset={first['offset']}").json()
    assert end["text"] == "" and end["done"] is True
    get(browser, server, f"/ui/runs/{run['id']}/log?offset=x", status=400)


def test_connections_are_shown_masked(browser, server):
    page = get(browser, server, "/ui/connections")
    assert "SECRETKEY" not in page.text and "****" in page.text
    text = text_of(page)
    assert "warehouse" in text and "svc@example.iam" in text and "${WAREHOUSE_TOKEN}" in text


def test_pipelines_page_lists_local_pipelines(browser, server):
    text = text_of(get(browser, server, "/ui/pipelines"))
    assert "houseprice" in text and "model.onnx" in text
    assert "house-model:1" in text and "house-model:2" in text  # the steps of pipeline chained
    assert "2 registered model versions" in text


def test_names_args_and_logs_are_escaped(browser, server):
    task = task_named(server, f"hello {EVIL}")
    for path in ("/", f"/ui/tasks/{task['id']}", f"/ui/runs/{last_run(server, task['id'])['id']}"):
        page = get(browser, server, path)
        assert EVIL not in page.text and html.escape(EVIL) in page.text


@pytest.mark.parametrize("path", ["/ui/tasks/00000000-0000-0000-0000-000000000000", "/ui/runs/nope", "/ui/nothing"])
def test_unknown_things_answer_a_404_page(browser, server, path):
    page = get(browser, server, path, status=404)
    assert page.headers["content-type"].startswith("text/html") and "<h1>" in page.text


# -- actions ----------------------------------------------------------------------------------
def test_actions_without_the_csrf_token_are_refused(browser, server):
    task_id = server.history["id"]
    for token in ("", "0" * 64):
        post(browser, server, f"/ui/tasks/{task_id}/pause", token, status=403)
    assert not task_named(server, "nightly-scores")["paused"]


def test_pause_and_resume_a_scheduled_task(browser, server):
    task_id = server.history["id"]
    csrf = csrf_of(get(browser, server, f"/ui/tasks/{task_id}"))
    answer = post(browser, server, f"/ui/tasks/{task_id}/pause", csrf)
    assert answer.headers["location"] == f"/ui/tasks/{task_id}?done=pause"
    assert task_named(server, "nightly-scores")["paused"] == 1
    page = text_of(get(browser, server, answer.headers["location"]))
    assert "Paused: the task does not fire" in page and "Resume" in page
    post(browser, server, f"/ui/tasks/{task_id}/resume", csrf)
    task = task_named(server, "nightly-scores")
    assert task["paused"] == 0 and task["next_fire_at"]


def test_a_run_once_task_cannot_be_paused(browser, server):
    task = task_named(server, "hello-fails")
    page = post(browser, server, f"/ui/tasks/{task['id']}/pause", csrf_of(get(browser, server, "/")), status=409)
    assert "only scheduled tasks can be paused" in text_of(page)


def test_run_once_starts_a_run_whose_log_the_page_tails(browser, server):
    source = task_named(server, "hello-fails")
    csrf = csrf_of(get(browser, server, f"/ui/tasks/{source['id']}"))
    answer = post(browser, server, f"/ui/tasks/{source['id']}/run", csrf)
    run_path = answer.headers["location"]
    assert re.fullmatch(r"/ui/runs/[0-9a-f-]{36}", run_path)
    page = get(browser, server, run_path)
    offset = int(re.search(r'data-offset="(\d+)"', page.text).group(1))
    seen = [get(browser, server, f"{run_path}/log?offset={offset}").json()]

    def more():
        chunk = get(browser, server, f"{run_path}/log?offset={seen[-1]['offset']}").json()
        seen.append(chunk)
        return chunk

    final = wait_for(more, lambda chunk: chunk["done"], timeout=60)
    assert final["run"]["status"] == "failure" and final["run"]["exit_code"] == 1
    log = page.text + "".join(chunk["text"] for chunk in seen)
    assert "failing on purpose: boom" in log


def test_kill_stops_a_running_task_and_returns_to_its_run(browser, server):
    from orchzip.runtime.store import Store
    store = Store(server.state_dir)
    try:
        long_task = store.create_task("run_once", task_named(server, "hello-fails")["source"], name="long",
                                      args={"ticks": 600, "tick_seconds": 0.2})
    finally:
        store.close()
    csrf = csrf_of(get(browser, server, "/"))
    run_path = post(browser, server, f"/ui/tasks/{long_task['id']}/run", csrf).headers["location"]
    running = wait_for(lambda: get(browser, server, f"{run_path}/log?offset=0").json(),
                       lambda chunk: "tick 1" in chunk["text"], timeout=60)
    assert running["run"]["status"] == "running"
    run_page = get(browser, server, run_path)
    kill_form = re.search(r'action="(/ui/tasks/[0-9a-f-]+/kill)"', run_page.text).group(1)
    answer = post(browser, server, kill_form, csrf_of(run_page), next=run_path)
    assert answer.headers["location"] == f"{run_path}?done=kill"
    ended = wait_for(lambda: get(browser, server, f"{run_path}/log?offset=0").json(),
                     lambda chunk: chunk["run"]["status"] != "running", timeout=60)
    assert ended["run"]["status"] == "killed"
    again = post(browser, server, kill_form, csrf_of(run_page), status=409)
    assert "already ended" in text_of(again)


# -- orchzip ui: the dashboard alone -----------------------------------------------------------
def test_orchzip_ui_serves_the_dashboard_without_the_api(tmp_path):
    import signal
    import subprocess
    import time

    from serve_helpers import free_port
    state = str(tmp_path / "state")
    orchzip(state, "run", HELLO, "--no-env", "--name", "hello-ui")
    token = orchzip(state, "serve", "--show-token").stdout.strip()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with open(tmp_path / "ui.log", "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "orchzip", "--state-dir", state, "ui", "--port", str(port),
                                    "--no-env"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                answer = requests.get(url + "/ui/login", timeout=2)
                break
            except requests.ConnectionError:
                assert process.poll() is None and time.monotonic() < deadline, (tmp_path / "ui.log").read_text()
                time.sleep(0.1)
        assert answer.status_code == 200
        session = requests.Session()
        signed_in = session.post(url + "/ui/login", data={"token": token, "next": "/"}, timeout=30)
        assert signed_in.status_code == 200 and "hello-ui" in signed_in.text
        assert requests.post(url + "/v1/api/workspaces/list", json={}, headers={"Authorization": f"Bearer {token}"},
                             timeout=30).status_code == 404
        task = next(t for t in json.loads(orchzip(state, "tasks", "list", "--json").stdout) if t["name"] == "hello-ui")
        page = session.get(f"{url}/ui/tasks/{task['id']}", timeout=30)
        run = session.post(f"{url}/ui/tasks/{task['id']}/run", data={"csrf": csrf_of(page)}, timeout=30)
        assert run.status_code == 200 and "/ui/runs/" in run.url
        ended = wait_for(lambda: session.get(run.url + "/log?offset=0", timeout=30).json(),
                         lambda chunk: chunk["run"]["status"] != "running", timeout=60)
        assert ended["run"]["status"] == "success" and "| done" in ended["text"]
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
    # uvicorn re-raises the SIGTERM it handled, after a clean shutdown.
    assert "Application shutdown complete" in (tmp_path / "ui.log").read_text()
