"""Start bqemulator offline and lean: run inside the emulator's own virtual environment.

    python bqemulator_launcher.py start --rest-port P --grpc-port G --project test

Three changes to a stock ``bqemulator start``, each for a test machine without internet:

- DuckDB's ``spatial`` (and ``avro``) extensions are not installed at start-up: installing them
  downloads from extensions.duckdb.org, which fails offline. orchzip uses no GEOGRAPHY or Avro.
- No automatic time-travel snapshot after each write: every snapshot copies the whole table,
  which makes a run of many batches slow and memory-hungry. Explicit snapshots still work.
- A multipart load whose media part is ``*/*`` (what google-cloud-bigquery sends for uploads
  under 5 MiB) is accepted, as real BigQuery accepts it.
- A load job uploaded with a client-chosen job id (``jobReference.jobId``) gets that id, and a
  second upload with the same id is refused with 409 Already Exists, as real BigQuery does
  (stock bqemulator mints its own id for every upload, so a retried load would run twice).
  orchzip's BigQuery sink relies on this for a retried run adding no duplicate rows.
"""

import sys


def _skip_extension_downloads():
    from bqemulator.storage import engine

    engine.DuckDBEngine._load_spatial = lambda self: None
    engine.DuckDBEngine._load_format_extensions = lambda self: None


def _skip_automatic_snapshots():
    from bqemulator.versioning import snapshots

    capture = snapshots.SnapshotManager.capture

    def capture_user_snapshots_only(self, project_id, dataset_id, table_id, *, kind="AUTO"):
        if kind == "AUTO":
            return None
        return capture(self, project_id, dataset_id, table_id, kind=kind)

    snapshots.SnapshotManager.capture = capture_user_snapshots_only


def _accept_any_media_type():
    from bqemulator.api.routes import upload

    permitted = upload._is_permitted_media_type
    upload._is_permitted_media_type = lambda media_type: media_type.startswith("*/*") or permitted(media_type)


_JOB_ID_KEY = "_orchzipClientJobId"


def _honour_client_job_ids():
    from bqemulator.api.routes import upload
    from bqemulator.domain.errors import AlreadyExistsError

    read_configuration = upload._load_configuration_from_envelope
    run_load = upload._run_load
    new_job_id = upload._new_job_id
    chosen = []

    def configuration_with_job_id(envelope):
        configuration = dict(read_configuration(envelope))
        job_id = (envelope.get("jobReference") or {}).get("jobId")
        if job_id:
            configuration[_JOB_ID_KEY] = job_id
        return configuration

    async def run_load_as_chosen_job(*, project_id, configuration, media_path, ctx):
        configuration = dict(configuration)
        job_id = configuration.pop(_JOB_ID_KEY, None)
        if job_id:
            if ctx.catalog.get_job(project_id, job_id) is not None:
                raise AlreadyExistsError(f"Already Exists: Job {project_id}:US.{job_id}")
            chosen.append(job_id)  # taken by the next _new_job_id(), with no await between
        return await run_load(
            project_id=project_id, configuration=configuration, media_path=media_path, ctx=ctx
        )

    upload._load_configuration_from_envelope = configuration_with_job_id
    upload._run_load = run_load_as_chosen_job
    upload._new_job_id = lambda: chosen.pop() if chosen else new_job_id()


def main(argv):
    _skip_extension_downloads()
    _skip_automatic_snapshots()
    _accept_any_media_type()
    _honour_client_job_ids()
    from bqemulator.cli import main as bqemulator_main

    bqemulator_main(args=argv, prog_name="bqemulator")


if __name__ == "__main__":
    main(sys.argv[1:])
