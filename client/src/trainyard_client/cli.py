"""`trainyard`: the command line over `Client`. Every command takes `--json` (machine-readable
output on stdout; progress and messages go to stderr). Exit codes: 0 ok, 2 a refusal or error
(its message on stderr, or `{"error": ...}` with --json); `jobs wait`: 0 succeeded, 1 failed,
3 cancelled, 4 still running at --timeout."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from collections.abc import Callable
from typing import Any, NoReturn, Optional

import httpx
import typer
import yaml

from trainyard_client import config
from trainyard_client.client import ApiError, Client
from trainyard_client.follow import SocketClosed
from trainyard_client.jobspec import SpecError

app = typer.Typer(help="Trainyard from the command line: datasets, jobs, sweeps, live events, downloads, exports.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
datasets_app = typer.Typer(help="Upload and list datasets.", no_args_is_help=True)
jobs_app = typer.Typer(help="Submit, list, follow, wait for and download jobs.", no_args_is_help=True)
export_app = typer.Typer(help="Export a job to MLflow or as TensorBoard event files.", no_args_is_help=True)
sweeps_app = typer.Typer(help="Start, watch, cancel and promote sweeps (Optuna picks each trial's settings).",
                         no_args_is_help=True)
app.add_typer(datasets_app, name="datasets")
app.add_typer(jobs_app, name="jobs")
app.add_typer(sweeps_app, name="sweeps")
jobs_app.add_typer(export_app, name="export")

JsonFlag = typer.Option(False, "--json", help="machine-readable JSON on stdout")
WAIT_CODES = {"succeeded": 0, "failed": 1, "cancelled": 3}


def _emit(as_json: bool, data: Any, human: str) -> None:
    typer.echo(json.dumps(data, indent=2) if as_json else human)


def _fail(as_json: bool, message: str, errors: dict | None = None) -> NoReturn:
    if as_json:
        typer.echo(json.dumps({"error": message, **({"errors": errors} if errors else {})}))
    else:
        typer.echo(f"error: {message}", err=True)
        for field, problem in (errors or {}).items():
            typer.echo(f"  {field}: {problem}", err=True)
    raise typer.Exit(2)


def _run(as_json: bool, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call fn; turn the errors a user can act on into a message and exit code 2."""
    try:
        return fn(*args, **kwargs)
    except SpecError as exc:
        _fail(as_json, "the job file was refused", exc.errors)
    except ApiError as exc:
        errors = exc.body.get("errors") if isinstance(exc.body, dict) else None
        if errors:
            _fail(as_json, f"HTTP {exc.status}: {exc.body.get('error', 'refused')}", errors)
        _fail(as_json, str(exc))
    except (config.ConfigError, SocketClosed, TimeoutError, OSError) as exc:
        _fail(as_json, str(exc))
    except httpx.HTTPError as exc:
        _fail(as_json, f"the server could not be reached: {exc}")


def _client(as_json: bool) -> Client:
    return _run(as_json, Client)


@app.command()
def login(url: str = typer.Option(None, "--url", help="the server, e.g. http://127.0.0.1:8000"),
          token: str = typer.Option(None, "--token", help="an API token (Account → API token)"),
          as_json: bool = JsonFlag) -> None:
    """Check the URL and token against the server, then store them (mode 0600)."""
    url = (url or typer.prompt("Server URL")).rstrip("/")
    token = token or typer.prompt("API token", hide_input=True)
    with Client(url, token) as c:
        _run(as_json, c.get, "/api/datasets/")
    path = config.save(url, token)
    _emit(as_json, {"url": url, "config": str(path)}, f"signed in to {url}; saved in {path}")


@datasets_app.command("list")
def datasets_list(as_json: bool = JsonFlag) -> None:
    """Your datasets and those shared with you."""
    rows = _run(as_json, _client(as_json).datasets)
    _emit(as_json, rows, "\n".join(f"{d['id']}  {d['status']:<9} {d['kind']:<9} {d['name']}" for d in rows)
          or "no datasets")


@datasets_app.command("upload")
def datasets_upload(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True),
    kind: str = typer.Option("auto", help="tabular, image, text, corpus, sequence or auto"),
    name: str = typer.Option("", help="default: the file name"),
    description: str = typer.Option(""),
    label_column: Optional[str] = typer.Option(None, help="tabular/text: the target column"),
    text_column: Optional[str] = typer.Option(None, help="text: the text column"),
    task: Optional[str] = typer.Option(None, help="classification or regression"),
    image_size: Optional[int] = typer.Option(None, help="image: side in pixels"),
    channels: Optional[str] = typer.Option(None, help="image: auto, 1 or 3"),
    level: Optional[str] = typer.Option(None, help="corpus: char or byte"),
    val_fraction: Optional[float] = typer.Option(None, help="validation share"),
    test_fraction: Optional[float] = typer.Option(None, help="seeded split: test share (default 0: no test split)"),
    split_column: Optional[str] = typer.Option(None, help="tabular/sequence/text: the train/val/test column "
                                                          "(default: a column named 'split')"),
    seed: Optional[int] = typer.Option(None, help="the seeded split's seed"),
    missing: Optional[str] = typer.Option(None, help="tabular/sequence: refuse or impute empty cells"),
    chunk_mb: int = typer.Option(8, min=1, help="PATCH size (keep below the server's TRAINYARD_MAX_REQUEST_MB)"),
    as_json: bool = JsonFlag,
) -> None:
    """Upload FILE resumably (tus): run the same command again after an interruption to go on."""
    options = {"label_column": label_column, "text_column": text_column, "task": task, "image_size": image_size,
               "channels": channels, "level": level, "val_fraction": val_fraction, "test_fraction": test_fraction,
               "split_column": split_column, "seed": seed, "missing": missing}
    c = _client(as_json)
    with typer.progressbar(length=file.stat().st_size, label=file.name, file=sys.stderr) as bar:
        def progress(done: int, total: int) -> None:
            bar.update(done - bar.pos)

        ds = _run(as_json, c.upload_dataset, file, kind=kind, name=name, description=description, options=options,
                  chunk_bytes=chunk_mb * 2**20, progress=progress)
    _emit(as_json, ds, f"uploaded {ds['name']} ({ds['id']}); status {ds['status']}")


@jobs_app.command("submit")
def jobs_submit(file: Path = typer.Option(..., "-f", "--file", exists=True, dir_okay=False,
                                          help="job YAML: dataset, architecture, model_config, train_config, ..."),
                dry_run: bool = typer.Option(False, "--dry-run", help="check the file only"),
                as_json: bool = JsonFlag) -> None:
    """Submit a job from a YAML file, checked first against the server's settings schema."""
    try:
        spec = yaml.safe_load(file.read_text())
    except yaml.YAMLError as exc:
        _fail(as_json, f"{file} is not valid YAML: {exc}")
    c = _client(as_json)
    if dry_run:
        body = _run(as_json, c.check_job, spec)
        _emit(as_json, body, "the job file is valid")
        return
    job = _run(as_json, c.submit_job, spec)
    _emit(as_json, job, f"submitted {job['name']} ({job['id']}); status {job['status']}")


@jobs_app.command("list")
def jobs_list(as_json: bool = JsonFlag) -> None:
    """Your jobs (all of them for staff)."""
    rows = _run(as_json, _client(as_json).jobs)
    _emit(as_json, rows, "\n".join(f"{j['id']}  {j['status']:<9} {j['architecture']:<12} {j['name']}" for j in rows)
          or "no jobs")


def _describe(event: dict) -> str | None:
    kind = event.get("kind")
    if kind == "metric":
        values = " ".join(f"{k}={v:.4g}" if isinstance(v, (int, float)) else f"{k}={v}"
                          for k, v in (event.get("values") or {}).items())
        return f"[{event.get('split')}] epoch {event.get('epoch')} step {event.get('step')}: {values}"
    if kind == "log":
        return f"[{event.get('level', 'log')}] {event.get('text', '').rstrip()}"
    if kind == "status":
        extra = f": {event['error']}" if event.get("error") else ""
        return f"status {event.get('status')}{extra}"
    return None


@jobs_app.command("follow")
def jobs_follow(job_id: str, after: int = typer.Option(0, help="start after this event number"),
                as_json: bool = JsonFlag) -> None:
    """Live metrics and log lines until the job ends (--json: one event per line)."""
    c = _client(as_json)

    def go() -> None:
        for event in c.follow(job_id, after=after):
            if as_json:
                typer.echo(json.dumps(event, separators=(",", ":")))
            elif (line := _describe(event)) is not None:
                typer.echo(line)

    _run(as_json, go)


@jobs_app.command("wait")
def jobs_wait(job_id: str, timeout: Optional[float] = typer.Option(None, help="give up after this many seconds"),
              interval: float = typer.Option(2.0, min=0.1, help="seconds between checks"),
              as_json: bool = JsonFlag) -> None:
    """Wait for the job to end; exit 0 succeeded, 1 failed, 3 cancelled, 4 timed out."""
    c = _client(as_json)
    job = _wait(as_json, c.wait, job_id, timeout, interval)
    _emit(as_json, job, f"{job['name']}: {job['status']}" + (f" ({job['error']})" if job.get("error") else ""))
    raise typer.Exit(WAIT_CODES[job["status"]])


def _wait(as_json: bool, wait: Callable[..., dict], object_id: str, timeout: float | None, interval: float) -> dict:
    """`wait(object_id)` until the job or sweep ends; exit 4 (with the reason) at the timeout."""
    try:
        return wait(object_id, timeout=timeout, interval=interval)
    except TimeoutError as exc:
        _emit(as_json, {"error": str(exc)}, str(exc))
        raise typer.Exit(4) from None
    except (ApiError, httpx.HTTPError) as exc:
        _run(as_json, _reraise, exc)
        raise  # not reached: _run exits


def _reraise(exc: Exception) -> NoReturn:
    raise exc


@jobs_app.command("download")
def jobs_download(job_id: str, directory: Path, as_json: bool = JsonFlag) -> None:
    """Every artifact of the job (model, card, ...) into DIRECTORY, checked by sha256."""
    paths = _run(as_json, _client(as_json).download, job_id, directory)
    _emit(as_json, [str(p) for p in paths], "\n".join(str(p) for p in paths) or "the job has no artifacts")


@jobs_app.command("cancel")
def jobs_cancel(job_id: str, as_json: bool = JsonFlag) -> None:
    """Cancel a queued or running job."""
    job = _run(as_json, _client(as_json).cancel_job, job_id)
    _emit(as_json, job, f"{job['name']}: {job['status']}")


@export_app.command("mlflow")
def export_mlflow(job_id: str, tracking_uri: str = typer.Option(..., help="the MLflow tracking URI"),
                  experiment: Optional[str] = typer.Option(None, help="experiment name (default: trainyard)"),
                  register_model: bool = typer.Option(False, help="also register the model as a model version"),
                  model_name: Optional[str] = typer.Option(None, help="registered model name"),
                  wait: bool = typer.Option(True, help="wait until the push is done or failed"),
                  as_json: bool = JsonFlag) -> None:
    """Push the job (params, metric history, model files) to an MLflow tracking server."""
    export = _run(as_json, _client(as_json).export_mlflow, job_id, tracking_uri, experiment=experiment,
                  register_model=register_model, model_name=model_name, wait=wait)
    _emit(as_json, export, f"MLflow export {export.get('status')}" + (f": run {export['run_id']}" if export.get(
        "run_id") else "") + (f" ({export['error']})" if export.get("error") else ""))
    if export.get("status") == "failed":
        raise typer.Exit(1)


@export_app.command("tensorboard")
def export_tensorboard(job_id: str, directory: Path,
                       extract: bool = typer.Option(True, help="unpack the .tar.gz into DIRECTORY"),
                       as_json: bool = JsonFlag) -> None:
    """Save the job's history as TensorBoard event files into DIRECTORY (then tensorboard --logdir)."""
    path = _run(as_json, _client(as_json).export_tensorboard, job_id, directory, extract=extract)
    _emit(as_json, {"path": str(path)}, f"{path}  (tensorboard --logdir {path})")


def _trial_line(t: dict) -> str:
    value = "" if t.get("value") is None else f"{t['value']:.4g}"
    params = " ".join(f"{k}={v}" for k, v in (t.get("params") or {}).items())
    return f"  #{t['number']:<3} {t['state']:<9} {value:<10} {params}"


def _sweep_text(sw: dict) -> str:
    best = sw.get("best")
    lines = [f"{sw['name']} ({sw['id']}): {sw['status']}, {sw['metric']} ({sw['direction']}), "
             f"{len(sw.get('trials', []))}/{sw['budget']} trials" + (f"; {sw['error']}" if sw.get("error") else "")]
    if best:
        lines.append(f"best: trial #{best['number']} {sw['metric']}={best['value']:.4g} {best['params']}")
    lines += [_trial_line(t) for t in sw.get("trials", [])]
    return "\n".join(lines)


@sweeps_app.command("create")
def sweeps_create(file: Path = typer.Option(..., "-f", "--file", exists=True, dir_okay=False,
                                            help="sweep YAML: dataset, architecture, space, metric, budget, ..."),
                  as_json: bool = JsonFlag) -> None:
    """Start a sweep from a YAML file (space keys: train.<setting> or model.<setting>)."""
    try:
        spec = yaml.safe_load(file.read_text())
    except yaml.YAMLError as exc:
        _fail(as_json, f"{file} is not valid YAML: {exc}")
    sweep = _run(as_json, _client(as_json).create_sweep, spec)
    _emit(as_json, sweep, f"started sweep {sweep['name']} ({sweep['id']}): {sweep['budget']} trials, "
                          f"{sweep['concurrency']} at once")


@sweeps_app.command("list")
def sweeps_list(as_json: bool = JsonFlag) -> None:
    """Your sweeps, newest first."""
    rows = _run(as_json, _client(as_json).sweeps)
    _emit(as_json, rows, "\n".join(f"{s['id']}  {s['status']:<9} {s['architecture']:<12} {s['name']}" for s in rows)
          or "no sweeps")


@sweeps_app.command("show")
def sweeps_show(sweep_id: str, as_json: bool = JsonFlag) -> None:
    """One sweep with its trials and the best so far."""
    sweep = _run(as_json, _client(as_json).sweep, sweep_id)
    _emit(as_json, sweep, _sweep_text(sweep))


@sweeps_app.command("wait")
def sweeps_wait(sweep_id: str, timeout: Optional[float] = typer.Option(None, help="give up after this many seconds"),
                interval: float = typer.Option(2.0, min=0.1, help="seconds between checks"),
                as_json: bool = JsonFlag) -> None:
    """Wait for the sweep to end; exit 0 finished, 1 failed, 3 cancelled, 4 timed out."""
    sweep = _wait(as_json, _client(as_json).wait_sweep, sweep_id, timeout, interval)
    _emit(as_json, sweep, _sweep_text(sweep))
    raise typer.Exit(WAIT_CODES[sweep["status"]])


@sweeps_app.command("cancel")
def sweeps_cancel(sweep_id: str, as_json: bool = JsonFlag) -> None:
    """Cancel the sweep and its unfinished trials."""
    sweep = _run(as_json, _client(as_json).cancel_sweep, sweep_id)
    _emit(as_json, sweep, f"{sweep['name']}: {sweep['status']}")


@sweeps_app.command("promote")
def sweeps_promote(sweep_id: str, as_json: bool = JsonFlag) -> None:
    """Submit a new job with the best trial's settings."""
    job = _run(as_json, _client(as_json).promote_sweep, sweep_id)
    _emit(as_json, job, f"submitted {job['name']} ({job['id']}); status {job['status']}")


# The same two commands by the names `jobs export-mlflow` / `jobs export-tensorboard`.
jobs_app.command("export-mlflow", hidden=True)(export_mlflow)
jobs_app.command("export-tensorboard", hidden=True)(export_tensorboard)


if __name__ == "__main__":
    app()
