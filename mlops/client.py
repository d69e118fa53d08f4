"""A client of the Wallaroo MLOps REST API: connections, workspaces, orchestrations, tasks.

    settings = Settings(url="http://127.0.0.1:8080", token=token)
    client = settings.create_client()
    orch = client.upload_orchestration("dist/houseprice.zip", workspace_id=1)
    client.wait_for_orchestration(orch["id"])
    task = client.run_once(orch["id"], workspace_id=1, json={"batch_size": 500})

Every call is a POST with a JSON body (the upload: multipart) and the bearer header. A
token comes from the settings, or from exchanging user and password at the instance's
Keycloak (``/auth/realms/master/protocol/openid-connect/token``, client ``sdk-client``).
Failed connections and 502/503/504 answers are retried a bounded number of times with
backoff; other 5xx answers only for calls that change nothing (get, list, logs), since a
repeated run_once or create could act twice. Errors are :class:`MLOpsError` subclasses with
one-line messages that never hold a secret.
"""

import json
import os
import time

import requests

from ._errors import (
    AuthenticationFailed, InstanceUnavailable, MLOpsError, OperationFailed, error_for_status, sanitize_url, scrub,
)

__all__ = ["Client", "MLOpsError", "ORCHESTRATION_FINAL", "TASK_FINAL", "TASK_KINDS", "task_outcome"]

KEYCLOAK_PATH = "/auth/realms/master/protocol/openid-connect/token"
CLIENT_ID = "sdk-client"
GATEWAY_ERRORS = (502, 503, 504)
ORCHESTRATION_FINAL = ("ready", "error")
TASK_FINAL = ("killed", "failed", "success", "timed_out")
# orchzip's task kinds by Wallaroo's run types.
TASK_KINDS = {"Oneshot": "run_once", "CronJob": "scheduled", "NetworkService": "continuous"}
# A run's final status, in the words of a task's.
RUN_OUTCOMES = {"success": "success", "failure": "failed", "timed_out": "timed_out", "killed": "killed"}


class Client:
    """One method per MLOps endpoint; each returns the decoded JSON answer.

    :param settings: a :class:`Settings` (checked here).
    :param session: a ``requests.Session`` to use (default: a new one).
    :param sleep: how to wait between retries and polls (tests pass a fake).
    """

    def __init__(self, settings, session=None, sleep=time.sleep):
        settings.check()
        self.settings = settings
        self._session = session or requests.Session()
        self._sleep = sleep
        self._token = settings.token

    def __repr__(self):
        return f"Client({self.settings.describe()})"

    # -- plumbing -------------------------------------------------------------------------
    def _headers(self):
        if self._token is None:
            self._token = self._exchange_password()
        return {"Authorization": f"Bearer {self._token}", "Accept": "application/json"}

    def _exchange_password(self):
        s = self.settings
        url = s.url + KEYCLOAK_PATH
        what = f"login of user {s.user} at the instance's Keycloak"
        form = {"grant_type": "password", "client_id": CLIENT_ID, "username": s.user, "password": s.password}
        response = self._send(lambda: self._session.post(url, data=form, timeout=s.timeout), what, url, True)
        if response.status_code in (400, 401, 403):
            raise AuthenticationFailed(
                f"{what} ({sanitize_url(url)}): {response.status_code}, the user and password "
                f"({s.password_source}) were refused; check WALLAROO_USER / WALLAROO_PASSWORD (or --user / --password)")
        if response.status_code >= 400:
            raise error_for_status(what, response.status_code, self._server_message(response), url,
                                   hint="that the instance has Keycloak at /auth")
        try:
            return response.json()["access_token"]
        except (ValueError, KeyError, TypeError):
            raise MLOpsError(f"{what}: the answer holds no access_token; check --url / WALLAROO_URL "
                             f"({sanitize_url(s.url)}) is a Wallaroo instance") from None

    def _send(self, make_request, what, url, idempotent):
        """``make_request()`` with bounded retries of failed connections and 5xx; the last response."""
        attempts = self.settings.retries + 1
        for attempt in range(1, attempts + 1):
            try:
                response = make_request()
            except (requests.ConnectionError, requests.Timeout) as err:
                if attempt == attempts:
                    reason = "timed out" if isinstance(err, requests.Timeout) else _connection_reason(err)
                    raise InstanceUnavailable(
                        f"{what}: cannot reach {sanitize_url(url)} ({reason}) after {attempts} "
                        f"tr{'y' if attempts == 1 else 'ies'}; check --url / WALLAROO_URL and that the instance is up"
                    ) from None
            else:
                retry = response.status_code in GATEWAY_ERRORS or (response.status_code >= 500 and idempotent)
                if not retry or attempt == attempts:
                    return response
            self._sleep(self.settings.backoff * 2 ** (attempt - 1))

    def _server_message(self, response):
        try:
            body = response.json()
            message = body.get("msg") or body.get("error") or body.get("detail") or json.dumps(body)
        except (ValueError, AttributeError):
            message = response.text
        return scrub(message, self.settings.secrets + [self._token or ""])

    def _post(self, path, body=None, files=None, idempotent=True, hint=""):
        url = self.settings.url + path
        what = f"POST {path}"

        def request():
            parts = files() if files else None
            return self._session.post(url, json=None if parts else (body or {}), files=parts,
                                      headers=self._headers(), timeout=self.settings.timeout)

        response = self._send(request, what, url, idempotent)
        if response.status_code == 401 and self.settings.token is None:
            self._token = None  # a token from user and password may have expired: log in again, once
            response = self._send(request, what, url, idempotent)
        if response.status_code >= 400:
            raise error_for_status(what, response.status_code, self._server_message(response), url, hint)
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise MLOpsError(f"{what}: the answer is not JSON; check --url / WALLAROO_URL "
                             f"({sanitize_url(self.settings.url)}) is a Wallaroo instance") from None

    # -- workspaces -----------------------------------------------------------------------
    def create_workspace(self, name):
        return self._post("/v1/api/workspaces/create", {"workspace_name": name}, idempotent=False)

    def list_workspaces(self):
        return self._post("/v1/api/workspaces/list", {})["workspaces"]

    # -- connections ----------------------------------------------------------------------
    def create_connection(self, name, type, details):
        return self._post("/v1/api/connections/create", {"name": name, "type": type, "details": details},
                          idempotent=False)

    def get_connection(self, name):
        return self._post("/v1/api/connections/get", {"name": name}, hint=f"that connection {name!r} exists")

    def get_connection_by_id(self, connection_id):
        return self._post("/v1/api/connections/get_by_id", {"id": str(connection_id)}, hint="the connection id")

    def list_connections(self, workspace_id=None):
        body = {} if workspace_id is None else {"workspace_id": workspace_id}
        return self._post("/v1/api/connections/list", body, hint="the workspace id")["connections"]

    def delete_connection(self, name):
        return self._post("/v1/api/connections/delete", {"name": name}, idempotent=False,
                          hint=f"that connection {name!r} exists")

    def add_connection_to_workspace(self, connection_id, workspace_id):
        return self._post("/v1/api/connections/add_to_workspace",
                          {"workspace_id": workspace_id, "connection_id": str(connection_id)},
                          idempotent=False, hint="the connection and workspace ids")

    def remove_connection_from_workspace(self, connection_id, workspace_id):
        return self._post("/v1/api/connections/remove_from_workspace",
                          {"workspace_id": workspace_id, "connection_id": str(connection_id)},
                          idempotent=False, hint="the connection and workspace ids")

    # -- orchestrations -------------------------------------------------------------------
    def upload_orchestration(self, zip_path, workspace_id, name=None):
        """Upload a zip (multipart parts ``file`` and ``metadata``); returns ``{"id": ...}``."""
        metadata = {"workspace_id": workspace_id}
        if name:
            metadata["name"] = name
        file_name = os.path.basename(zip_path)

        def files():
            with open(zip_path, "rb") as fh:  # read per attempt, so that a retry sends it whole
                data = fh.read()
            return {"file": (file_name, data, "application/zip"),
                    "metadata": (None, json.dumps(metadata).encode(), "application/json")}

        return self._post("/v1/api/orchestration/upload", files=files, idempotent=False,
                          hint=f"that workspace {workspace_id} exists")

    def get_orchestration(self, orch_id):
        return self._post("/v1/api/orchestration/get_by_id", {"id": str(orch_id)}, hint="the orchestration id")

    def list_orchestrations(self, workspace_id=None):
        if workspace_id is None:
            return [item["orchestration"] for item in self.list_orchestrations_with_tasks()]
        return self._post("/v1/api/orchestration/list", {"workspace_id": workspace_id}, hint="the workspace id")

    def list_orchestrations_with_tasks(self, workspace_ids=()):
        """``[{"orchestration": O, "tasks": [T...], "workspace": W}]`` of the given workspaces (all
        when empty), as Wallaroo's ``list_all`` answers: the one call that ties tasks to uploads."""
        answer = self._post("/v1/api/orchestration/list_all",
                            {"task_run_status": [], "workspace_ids": list(workspace_ids)}, hint="the workspace ids")
        return answer.get("orchestrations") or []

    def wait_for_orchestration(self, orch_id, timeout=900.0, interval=1.0, on_status=None):
        """Poll until the orchestration is ``ready`` (returned) or ``error`` (:class:`OperationFailed`).

        :param on_status: called with the orchestration each time its status changes.
        """
        orch = self._poll(lambda: self.get_orchestration(orch_id), ORCHESTRATION_FINAL, timeout, interval,
                          on_status, f"orchestration {orch_id}")
        if orch["status"] == "error":
            reason = orch.get("error") or "no reason given; look at the instance's orchestration status"
            raise OperationFailed(f"orchestration {orch_id} failed packaging: {scrub(reason, self.settings.secrets)}")
        return orch

    # -- tasks ----------------------------------------------------------------------------
    def run_once(self, orch_id, workspace_id, json=None, name=None, timeout=None):
        return self._start_task("run_once", orch_id, workspace_id, json, name, timeout=timeout)

    def run_scheduled(self, orch_id, workspace_id, schedule, json=None, name=None, timeout=None):
        return self._start_task("run_scheduled", orch_id, workspace_id, json, name, timeout=timeout,
                                schedule=schedule)

    def run_continuously(self, orch_id, workspace_id, json=None, name=None):
        """A task kept running until killed (Wallaroo's run type NetworkService)."""
        return self._start_task("run_continuously", orch_id, workspace_id, json, name)

    def _start_task(self, kind, orch_id, workspace_id, json, name, timeout=None, schedule=None):
        """POST task/<kind>: the body every kind of task shares, plus what was given of the rest."""
        body = {"orch_id": str(orch_id), "workspace_id": workspace_id, "json": json or {}}
        if schedule is not None:
            body["schedule"] = schedule
        if name:
            body["name"] = name
        if timeout is not None:
            body["timeout"] = timeout
        return self._post(f"/v1/api/task/{kind}", body, idempotent=False,
                          hint="the orchestration id and workspace id")

    def list_tasks(self, workspace_id=None, killed=None, orch_id=None):
        body = {k: v for k, v in (("workspace_id", workspace_id), ("killed", killed), ("orch_id", orch_id))
                if v is not None}
        return self._post("/v1/api/task/list", body)

    def get_task(self, task_id):
        return self._post("/v1/api/task/get_by_id", {"id": str(task_id)}, hint="the task id")

    def kill_task(self, task_id):
        return self._post("/v1/api/task/kill", {"id": str(task_id)}, idempotent=False, hint="the task id")

    def pause_task(self, task_id, pause=True):
        """Pause (or, ``pause=False``, resume) a scheduled task: ``/v1/api/task/pause``, as the
        SDK's experimental ``_pause``/``_resume`` call it."""
        return self._post("/v1/api/task/pause", {"id": str(task_id), "pause": pause}, idempotent=False,
                          hint="the task id (only scheduled tasks pause)")

    def list_task_runs(self, task_id, limit=None, status=None):
        body = {"task_id": str(task_id)}
        if limit is not None:
            body["limit"] = limit
        if status is not None:
            body["status"] = status
        return self._post("/v1/api/task/list_task_runs", body, hint="the task id")

    def get_logs(self, run_id, lines=None):
        body = {"id": str(run_id)}
        if lines is not None:
            body["lines"] = lines
        return self._post("/v1/api/task/get_logs_for_run", body, hint="the run id (see: orchzip remote runs TASK)")["logs"]

    def wait_for_task(self, task_id, timeout=3600.0, interval=1.0, on_status=None):
        """Poll until the task has ended; returns it (its outcome: :func:`task_outcome`).

        A run-once task on Wallaroo stays ``started`` after its run: it has ended when its run has.
        """
        return self._poll(lambda: self.get_task(task_id), TASK_FINAL, timeout, interval, on_status, f"task {task_id}",
                          state=lambda t: task_outcome(t) or t["status"])

    def _poll(self, get, final, timeout, interval, on_status, label, state=None):
        state = state or (lambda item: item["status"])
        deadline = time.monotonic() + timeout
        last = None
        while True:
            item = get()
            if state(item) != last and on_status is not None:
                on_status(item)
            last = state(item)
            if last in final:
                return item
            if time.monotonic() >= deadline:
                raise OperationFailed(f"{label} is still {last} after {timeout:g} s; look again later")
            self._sleep(interval)


def task_outcome(task):
    """How a task ended: ``success``, ``failed``, ``timed_out`` or ``killed``; None while it goes on.

    A task's own status says so when it is final; a run-once task that keeps ``started`` after its
    run (as on Wallaroo) ended with its latest run.
    """
    if task["status"] in TASK_FINAL:
        return task["status"]
    runs = task.get("last_runs") or []
    if task.get("run_type", "Oneshot") == "Oneshot" and runs and runs[0]["status"] in RUN_OUTCOMES:
        return RUN_OUTCOMES[runs[0]["status"]]
    return None


def _connection_reason(err):
    text = str(err).lower()
    for needle, reason in (("refused", "connection refused"), ("name or service", "unknown host"),
                           ("nodename", "unknown host"), ("timed out", "timed out"), ("ssl", "TLS error"),
                           ("reset", "connection reset")):
        if needle in text:
            return reason
    return type(err).__name__
