"""Run logs: Wallaroo's line form and framing, written as the task prints, bounded by a cap."""

import os
import re
import subprocess
import sys
import textwrap
import time

import pytest

from orchzip.errors import ConfigError
from orchzip.runtime.task_logs import MAX_LINE_BYTES, TaskLog, parse_line, resolve_max_bytes
from tests.support.waiting import wait_for

LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z (stdout|stderr) [FP] .*$")


def orchestration(tmp_path, name, code):
    folder = tmp_path / name
    folder.mkdir()
    (folder / "main.py").write_text(textwrap.dedent(code))
    return str(folder)


def last_run(orchzip_cli):
    return orchzip_cli("runs", "list", "--json").json()[0]



@pytest.mark.timeout(120)
def test_lines_are_stored_in_wallaroos_form_between_its_framing_lines(orchzip_cli, tmp_path):
    folder = orchestration(tmp_path, "talker", """\
        import sys
        print("to stdout")
        print("to stderr", file=sys.stderr)
        print("x" * 40000)
        sys.stdout.write("no newline at the end")
    """)
    ran = orchzip_cli("run", folder, "--no-env")
    assert ran.code == 0, ran
    assert "to stdout" in ran.out and "to stderr" in ran.err and "WALLAROO" not in ran.out  # framing stays in the log
    raw = orchzip_cli("runs", "logs", "--last", "--raw").out.splitlines()
    assert all(LINE.match(line) for line in raw), raw
    parsed = [parse_line(line) for line in raw]
    texts = [p.text for p in parsed]
    assert texts[0] == "WALLAROO: Setting up task run..."
    assert "Task environment ready. Running..." in texts[:4]
    assert texts[-1] == "Task run complete. Status: success"
    assert ("stdout", "to stdout") in [(p.stream, p.text) for p in parsed]
    assert ("stderr", "to stderr") in [(p.stream, p.text) for p in parsed]
    # A line longer than 16 KiB is stored in pieces: P, P, then the last one F.
    pieces = [p for p in parsed if set(p.text) == {"x"}]
    assert [p.partial for p in pieces] == [True, True, False] and len(pieces[0].text) == MAX_LINE_BYTES
    assert ("stdout", "no newline at the end", False) in [(p.stream, p.text, p.partial) for p in parsed]

    text = orchzip_cli("runs", "logs", "--last").out.splitlines()
    assert "x" * 40000 in text and "to stdout" in text and text[-1] == "Task run complete. Status: success"
    stamped = orchzip_cli("runs", "logs", "--last", "--timestamps", "--lines", "1").out
    assert re.fullmatch(r"\S+Z Task run complete\. Status: success\n", stamped), stamped
    as_json = orchzip_cli("runs", "logs", "--last", "--json").json()
    assert as_json["logs"] == raw and as_json["id"] == last_run(orchzip_cli)["id"]


@pytest.mark.timeout(120)
def test_a_failed_run_says_so_in_its_closing_line_and_error(orchzip_cli, tmp_path):
    folder = orchestration(tmp_path, "failer", """\
        print("about to fail")
        raise ValueError("the input is empty")
    """)
    ran = orchzip_cli("run", folder, "--no-env")
    assert ran.code == 1 and "ValueError: the input is empty" in ran.err
    run = last_run(orchzip_cli)
    assert run["status"] == "failure" and run["error"] == "ValueError: the input is empty"
    logs = [parse_line(line) for line in orchzip_cli("runs", "logs", run["id"], "--raw").out.splitlines()]
    assert logs[-1].text == "Task run complete. Status: failure"
    assert ("stderr", "ValueError: the input is empty") in [(p.stream, p.text) for p in logs]


@pytest.mark.timeout(180)
def test_a_flood_of_output_is_capped_keeping_head_and_tail_and_says_so(orchzip_cli, tmp_path):
    # About 15 MiB of output, part of it from a child process the task starts (find).
    folder = orchestration(tmp_path, "flood", """\
        import subprocess, sys
        print("the first line")
        for i in range(200000):
            print(f"line {i} " + "y" * 40)
        subprocess.run(["find", sys.prefix], check=False)
        print("the last line")
    """)
    ran = orchzip_cli("run", folder, "--no-env", "--log-max-bytes", "256k", timeout=150)
    assert ran.code == 0, ran
    run = orchzip_cli("runs", "show", last_run(orchzip_cli)["id"], "--json").json()
    assert os.path.getsize(run["log_path"]) <= 256 * 1024
    assert run["log_truncated"] is True and run["log_bytes"] > 10 * 1024 * 1024
    assert 0 < run["log_bytes"] - run["log_dropped_bytes"] <= 256 * 1024
    text = orchzip_cli("runs", "logs", run["id"]).out.splitlines()
    assert text[0] == "WALLAROO: Setting up task run..." and "the first line" in text and "line 0 " + "y" * 40 in text
    assert text[-2:] == ["the last line", "Task run complete. Status: success"]
    marker = [line for line in text if line.startswith("orchzip: log truncated:")]
    assert len(marker) == 1 and "left out here" in marker[0] and "--log-max-bytes" in marker[0]
    assert "line 199999 " + "y" * 40 not in text or "line 100000 " + "y" * 40 not in text  # the middle went
    shown = orchzip_cli("runs", "show", run["id"]).out
    assert re.search(r"^log +truncated: .* left out", shown, re.M), shown


@pytest.mark.timeout(120)
def test_the_log_is_readable_while_the_task_still_runs(orchzip_cli, state_dir, tmp_path):
    release = tmp_path / "release"
    folder = orchestration(tmp_path, "waiter", f"""\
        import os, time
        print("waiting for the test", flush=False)
        while not os.path.exists({str(release)!r}):
            time.sleep(0.05)
        print("released")
    """)
    cli = subprocess.Popen([sys.executable, "-m", "orchzip", "--state-dir", state_dir, "run", folder, "--no-env"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        text = wait_for(lambda: "waiting for the test" in (out := orchzip_cli("runs", "logs", "--last").out) and out,
                        60, "the first line in the log")
        assert "released" not in text and "Task run complete" not in text
        assert last_run(orchzip_cli)["status"] == "running"
        release.write_text("go")
        assert cli.wait(timeout=60) == 0
        assert orchzip_cli("runs", "logs", "--last", "--lines", "2").out == "released\nTask run complete. Status: success\n"
    finally:
        cli.kill()
        cli.wait(timeout=30)


def test_the_cap_keeps_the_file_bounded_under_many_writes(tmp_path):
    path = str(tmp_path / "log.txt")
    seen = []
    log = TaskLog(path, max_bytes=64 * 1024, on_truncated=seen.append)
    log.frame("WALLAROO: Setting up task run...")
    for i in range(20000):
        log.write("stdout", f"line {i}")
        assert os.path.getsize(path) <= 64 * 1024
    stats = log.finish("success")
    lines = [parse_line(line) for line in open(path, encoding="utf-8").read().splitlines()]
    texts = [p.text for p in lines]
    assert texts[:3] == ["WALLAROO: Setting up task run...", "line 0", "line 1"]
    assert texts[-2:] == ["line 19999", "Task run complete. Status: success"]
    numbers = [int(t.split()[1]) for t in texts if t.startswith("line ")]
    # What is kept is a run of the first lines and a run of the last ones, in order, no line twice.
    gap = next(i for i in range(1, len(numbers)) if numbers[i] != numbers[i - 1] + 1)
    assert numbers[:gap] == list(range(gap)) and numbers[gap:] == list(range(numbers[gap], 20000))
    marker = [t for t in texts if t.startswith("orchzip: log truncated:")]
    assert len(marker) == 1 and f"{numbers[gap] - gap} lines" in marker[0]
    assert seen and stats["log_dropped_bytes"] == seen[-1]["log_dropped_bytes"] > 0
    assert stats["log_bytes"] - stats["log_dropped_bytes"] == os.path.getsize(path) - len(marker[0]) - 41


@pytest.mark.parametrize("value, expected", [("16777216", 16777216), ("16MiB", 16 << 20), ("512k", 512 << 10),
                                             ("1G", 1 << 30), (" 64 KB ", 64 << 10)])
def test_log_sizes_are_read_in_bytes_or_binary_units(value, expected):
    assert resolve_max_bytes(value) == expected


@pytest.mark.parametrize("value, fragment", [("lots", "must be a size"), ("1000", "at least 65536"), ("-5", "must be a size")])
def test_a_bad_log_size_is_refused(value, fragment):
    with pytest.raises(ConfigError, match=fragment):
        resolve_max_bytes(value)


def test_a_bad_log_size_is_one_line_on_the_command_line(orchzip_cli, tmp_path):
    folder = orchestration(tmp_path, "hello", "print('hi')\n")
    refused = orchzip_cli("run", folder, "--no-env", "--log-max-bytes", "tiny")
    assert refused.code == 2 and "--log-max-bytes" in refused.err and "Traceback" not in refused.err
    refused = orchzip_cli("run", folder, "--no-env", env={"ORCHZIP_LOG_MAX_BYTES": "10"})
    assert refused.code == 2 and "ORCHZIP_LOG_MAX_BYTES must be at least" in refused.err
    assert "Traceback" not in refused.err and len(refused.err.strip().splitlines()) == 1, refused


def test_runs_logs_needs_a_run_id_or_last(orchzip_cli):
    none = orchzip_cli("runs", "logs")
    assert none.code == 2 and "--last" in none.err
    empty = orchzip_cli("runs", "logs", "--last")
    assert empty.code == 2 and "no runs yet" in empty.err


def test_lines_of_an_older_log_without_the_form_are_text():
    assert parse_line("just text\n") == (None, None, False, "just text")
    assert parse_line("2024-12-09T21:21:34.034571374Z stdout F Getting the connection").text == "Getting the connection"
    assert parse_line("2024-12-09T21:21:34.034571374Z stderr P ").partial is True
