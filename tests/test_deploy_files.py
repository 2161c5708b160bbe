"""The deployment files (docs/deploy/): the compose file validates (`docker compose config`), the systemd
units parse (`systemd-analyze verify`), and every command in them is one the project's own
command lines accept: the `manage.py` subcommand exists and takes those options, the Celery
worker options parse with Celery's own parser, and the queues they consume are the queues the
settings route tasks to, each consumed by some worker."""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "docs" / "deploy"
COMPOSE_FILE = DEPLOY / "docker-compose.yml"
ENV_EXAMPLE = DEPLOY / "trainyard.env.example"
UNITS_DIR = DEPLOY / "systemd"
INSTALL_DIR = "/opt/trainyard"  # where the units expect the checkout (docs/operations.md)
UNITS = ["trainyard-migrate.service", "trainyard-web.service", "trainyard-worker@.service",
         "trainyard-ingest.service", "trainyard-infer.service", "trainyard-notify.service"]
APP_SERVICES = ["migrate", "web", "train", "ingest", "infer", "notify"]  # the Trainyard image's
DATA_DIR = "/data"
SECRETS = ["SECRET_KEY", "POSTGRES_PASSWORD", "REDIS_PASSWORD"]
# What `docker compose config` interpolates: the secrets the example leaves empty, test-only.
TEST_SECRETS = {"SECRET_KEY": "test-only-" + "k" * 50, "POSTGRES_PASSWORD": "test-only-pg",
                "REDIS_PASSWORD": "test-only-redis"}


# --- the project's command lines ------------------------------------------------------------

def routed_queues() -> set[str]:
    from django.conf import settings

    return {route["queue"] for route in settings.CELERY_TASK_ROUTES.values()} | {settings.CELERY_TASK_DEFAULT_QUEUE}


def check_manage_py(args: list[str]) -> str:
    """`manage.py <command> <options>`: the command exists and its own parser takes the options."""
    from django.core.management import get_commands, load_command_class

    assert (ROOT / "manage.py").is_file()
    assert args, "manage.py without a command"
    name, options = args[0], args[1:]
    commands = get_commands()
    assert name in commands, f"manage.py has no command {name!r}"
    parser = load_command_class(commands[name], name).create_parser("manage.py", name)
    parser.parse_args(options)  # CommandError on an unknown option or a bad value
    return name


def check_celery(args: list[str]) -> set[str]:
    """`celery -A <app> worker <options>`, parsed by Celery's own click commands; the queues."""
    import click
    from celery.bin.base import CLIContext
    from celery.bin.celery import celery

    from webapp.celery import app

    ctx = celery.make_context("celery", list(args))
    app_module = ctx.params["app"]
    assert app_module == "workers.adapters.worker", app_module
    spec = importlib.util.find_spec(app_module)
    assert spec is not None and spec.origin, f"no module {app_module}"
    # `-A module` loads the module's `app` (or `celery`): without importing it (Django setup, tasks).
    bound = {alias.asname or alias.name for node in ast.walk(ast.parse(Path(spec.origin).read_text()))
             if isinstance(node, ast.ImportFrom) for alias in node.names}
    assert "app" in bound, f"{app_module} does not bind `app`"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # click 8.2: protected_args
        rest = [*getattr(ctx, "protected_args", []), *ctx.args]
    assert rest and rest[0] == "worker", rest
    ctx.obj = CLIContext(app=app, no_color=True, workdir=None, quiet=True)
    try:
        worker = celery.get_command(ctx, "worker").make_context("worker", rest[1:], parent=ctx)
    except click.ClickException as exc:
        raise AssertionError(f"celery worker refuses {rest[1:]}: {exc.format_message()}") from None
    params = worker.params
    queues = set(params["queues"] or [])
    assert queues, "a worker without -Q consumes the default queue only by accident"
    assert queues <= routed_queues(), f"queues no task is routed to: {queues - routed_queues()}"
    assert params["hostname"] and "@" in params["hostname"], "each worker needs a name of its own (-n name@%h)"
    if "train" in queues:
        assert params["concurrency"] == 1 and params["prefetch_multiplier"] == 1, "one job per GPU"
    return queues


def check_command(argv: list[str]) -> set[str]:
    """A service's command: `python manage.py ...` or `celery ...`; the queues it consumes."""
    program = Path(argv[0]).name
    if program == "python":
        assert argv[1] == "manage.py", argv
        check_manage_py(argv[2:])
        return set()
    assert program == "celery", f"not one of the project's entry points: {argv}"
    assert importlib.metadata.entry_points(group="console_scripts", name="celery"), "no celery console script"
    return check_celery(argv[1:])


def test_the_checks_fail_on_wrong_commands():
    """The checks below can fail: a missing subcommand, an option the command does not take, a
    Celery option that does not exist, a queue nothing is routed to."""
    with pytest.raises(AssertionError, match="no command"):
        check_command(["python", "manage.py", "runwebb"])
    with pytest.raises(Exception, match="unrecognized arguments"):
        check_command(["python", "manage.py", "runweb", "--hots", "0.0.0.0"])
    with pytest.raises(AssertionError, match="refuses"):
        check_command(["celery", "-A", "workers.adapters.worker", "worker", "-Q", "train", "--pool", "thread"])
    with pytest.raises(AssertionError, match="no task is routed"):
        check_command(["celery", "-A", "workers.adapters.worker", "worker", "-Q", "trian", "-n", "x@%h"])
    with pytest.raises(AssertionError, match="entry points"):
        check_command(["uvicorn", "webapp.asgi:application"])


# --- the compose file -----------------------------------------------------------------------

def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())  # anchors and `<<` merges resolved


def env_file(path: Path) -> dict[str, str]:
    """KEY=value lines (both compose and systemd read this file: no quotes, no trailing comments)."""
    values = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep and re.fullmatch(r"[A-Z][A-Z0-9_]*", key), f"{path.name}:{n}: not KEY=value: {line!r}"
        assert not re.search(r"""["']|\s#""", value), f"{path.name}:{n}: quotes or a comment after the value"
        values[key] = value
    return values


def test_compose_has_every_service_with_health_checks_and_start_order():
    services = compose()["services"]
    assert set(services) == {*APP_SERVICES, "redis", "postgres"}
    for name in ("redis", "postgres", "web"):
        assert services[name]["healthcheck"]["test"], name
    for name in ("redis", "postgres"):
        assert any(v.endswith(":/data") or v.endswith(":/var/lib/postgresql/data") for v in services[name]["volumes"])
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert services["migrate"]["restart"] == "no"
    for name in APP_SERVICES[1:]:
        assert services[name]["depends_on"] == {
            "migrate": {"condition": "service_completed_successfully"},
            "postgres": {"condition": "service_healthy"},
            "redis": {"condition": "service_healthy"},
        }, name
    # Migrations run once, in the one-shot service; the web server only serves.
    assert services["migrate"]["command"][:3] == ["python", "manage.py", "migrate"]
    assert services["web"]["command"][:3] == ["python", "manage.py", "runweb"]


def test_compose_training_worker_reserves_a_gpu_and_stops_gracefully():
    train = compose()["services"]["train"]
    (device,) = train["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert device.get("device_ids") or device.get("count")
    assert train["stop_signal"] == "SIGTERM"
    minutes = re.fullmatch(r"(\d+)m", train["stop_grace_period"])
    assert minutes and int(minutes.group(1)) >= 2, "time for the running job's checkpoint"
    for name in ("ingest", "infer", "notify", "web"):
        assert "deploy" not in compose()["services"][name], f"{name} reserves no GPU"


def test_compose_shares_one_data_dir_between_web_and_workers():
    doc = compose()
    mounts = set()
    for name in APP_SERVICES:
        service = doc["services"][name]
        assert service["environment"]["TRAINYARD_DATA_DIR"] == DATA_DIR, name
        (volume,) = [v for v in service["volumes"] if v.endswith(":" + DATA_DIR)]
        mounts.add(volume)
    (volume,) = mounts  # one and the same source everywhere
    default = re.fullmatch(r"\$\{TRAINYARD_DATA_VOLUME:-([\w-]+)\}:" + DATA_DIR, volume).group(1)
    assert default in doc["volumes"]


def test_compose_commands_are_the_projects_and_cover_every_queue():
    consumed = {}
    for name in APP_SERVICES:
        command = compose()["services"][name]["command"]
        argv = [re.sub(r"\$\{(\w+):-([^}]*)\}", r"\2", arg) for arg in command]  # compose's defaults
        for queue in check_command(argv):
            consumed.setdefault(queue, []).append(name)
    assert set(consumed) == routed_queues()
    assert consumed["train"] == ["train"]


def test_no_secret_is_committed_and_every_secret_is_required():
    doc = compose()
    for name in APP_SERVICES:
        env = doc["services"][name]["environment"]
        for key in ("SECRET_KEY", "DATABASE_URL", "REDIS_URL"):
            assert re.fullmatch(r"\$\{%s:\?[^}]+\}" % key, env[key]), (name, key, env[key])
    assert doc["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:?")
    assert doc["services"]["redis"]["environment"]["REDISCLI_AUTH"].startswith("${REDIS_PASSWORD:?")
    example = env_file(ENV_EXAMPLE)
    for key in SECRETS:
        assert example[key] == "", f"{key} has a value in {ENV_EXAMPLE.name}"
    for key in ("DATABASE_URL", "REDIS_URL"):
        assert re.search(r":(POSTGRES|REDIS)_PASSWORD@", example[key]), "a placeholder, not a password"
    # What the deploy checks (webapp/deploy_checks.py) want set in production.
    for key in ("TRAINYARD_CHANNEL_PREFIX", "TRAINYARD_MAX_REQUEST_MB", "TRAINYARD_PROXY_COUNT"):
        assert example[key], key
    assert example["SECURE_COOKIES"] == "1" and example.get("DEBUG", "0") in ("", "0")
    # The filled-in copies are never committed (nor sent into the image).
    if shutil.which("git") and subprocess.run(["git", "rev-parse"], cwd=ROOT, capture_output=True).returncode == 0:
        for path in ("docs/deploy/.env", "docs/deploy/trainyard.env"):
            assert subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT).returncode == 0, path
    else:  # not a git checkout (an unpacked archive): the patterns at least
        assert {"/docs/deploy/.env", "/docs/deploy/*.env"} <= set((ROOT / ".gitignore").read_text().split())
    assert "docs/deploy/.env" in (ROOT / ".dockerignore").read_text().split()


def test_the_example_settings_pass_the_deploy_checks(tmp_path):
    """The example, its secrets filled in, is production mode: `manage.py check --deploy` finds
    nothing but the two HSTS options that are the admin's own decision (docs/operations.md)."""
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp")} | env_file(ENV_EXAMPLE) | {
        "SECRET_KEY": "test-only-" + "3f9a1c7e5b" * 6, "TRAINYARD_DATA_DIR": str(tmp_path / "data"),
        "DJANGO_SETTINGS_MODULE": "webapp.settings"}
    result = subprocess.run([sys.executable, "manage.py", "check", "--deploy"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    found = set(re.findall(r"\((\w+\.[WE]\d+)\)", result.stdout + result.stderr))
    assert found <= {"security.W005", "security.W021"}, result.stdout + result.stderr


def compose_binary() -> list[str] | None:
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    standalone = shutil.which("docker-compose")  # Debian's package (`make test` installs it as root)
    return [standalone] if standalone else None


def run_compose_config(env: dict[str, str]) -> subprocess.CompletedProcess:
    binary = compose_binary()
    if binary is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed "
                    "(`make test` installs Debian's docker-compose when run as root with apt)")
    # A clean environment: nothing from the shell running the tests may fill in a value.
    base = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"),
            # The example stands in for docs/deploy/.env, both as compose's variables and as env_file.
            "TRAINYARD_ENV_FILE": ENV_EXAMPLE.name}
    return subprocess.run([*binary, "--env-file", str(ENV_EXAMPLE), "-f", str(COMPOSE_FILE), "config", "-q"],
                          cwd=DEPLOY, env=base | env, capture_output=True, text=True, timeout=120)


def test_docker_compose_config_validates_the_compose_file():
    """`docker compose config` reads, interpolates and validates the file against the compose
    schema (no image is pulled or built, no daemon is needed)."""
    result = run_compose_config(TEST_SECRETS)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("missing", SECRETS)
def test_docker_compose_refuses_to_run_without_a_secret(missing):
    result = run_compose_config({k: v for k, v in TEST_SECRETS.items() if k != missing})
    assert result.returncode != 0
    assert f"set {missing} in docs/deploy/.env" in result.stderr


# --- the systemd units ----------------------------------------------------------------------

def parse_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """A unit file: sections of keys, each with every value it was given (systemd keys repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for n, line in enumerate(path.read_text().splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped[0] in "#;":
            continue
        assert not stripped.endswith("\\"), f"{path.name}:{n}: keep each setting on one line"
        if header := re.fullmatch(r"\[(\w+)\]", stripped):
            current = sections.setdefault(header.group(1), {})
            continue
        key, sep, value = stripped.partition("=")
        assert current is not None and sep and re.fullmatch(r"[A-Za-z]+", key.strip()), f"{path.name}:{n}: {line!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def one(unit: dict, section: str, key: str) -> str:
    values = unit[section].get(key, [])
    assert len(values) == 1, (section, key, values)
    return values[0]


def expand_specifiers(value: str, instance: str) -> str:
    """systemd's %-specifiers in ExecStart: %i is the instance, %% a literal %; any other would
    be replaced by systemd (%h: the home directory), which these units never mean."""
    def sub(match):
        if match.group(1) == "%":
            return "%"
        assert match.group(1) == "i", f"specifier %{match.group(1)} in {value!r} (write %% for a literal %)"
        return instance
    return re.sub(r"%(.)", sub, value)


def seconds(value: str) -> int:
    match = re.fullmatch(r"(\d+)\s*(s|min)?", value)
    assert match, value
    return int(match.group(1)) * (60 if match.group(2) == "min" else 1)


def test_systemd_units_run_as_trainyard_with_the_environment_file_and_a_warm_shutdown():
    assert sorted(p.name for p in UNITS_DIR.glob("*.service")) == sorted(UNITS)
    for name in UNITS:
        unit = parse_unit(UNITS_DIR / name)
        assert set(unit) <= {"Unit", "Service", "Install"} and one(unit, "Unit", "Description")
        assert one(unit, "Service", "User") == "trainyard" and one(unit, "Service", "Group") == "trainyard"
        assert one(unit, "Service", "EnvironmentFile") == "/etc/trainyard/trainyard.env"
        assert one(unit, "Service", "WorkingDirectory") == INSTALL_DIR
        if name == "trainyard-migrate.service":
            assert one(unit, "Service", "Type") == "oneshot"
            continue
        assert one(unit, "Service", "Restart") == "on-failure"
        assert one(unit, "Service", "KillSignal") == "SIGTERM"
        # SIGTERM to the main process only: Celery's warm shutdown waits for its pool, then exits.
        assert one(unit, "Service", "KillMode") == "mixed"
        assert one(unit, "Install", "WantedBy") == "multi-user.target"
    worker = parse_unit(UNITS_DIR / "trainyard-worker@.service")
    assert seconds(one(worker, "Service", "TimeoutStopSec")) >= 120, "time for the running job's checkpoint"
    assert "CUDA_VISIBLE_DEVICES=%i" in one(worker, "Service", "Environment").split()
    for name in ("trainyard-ingest.service", "trainyard-infer.service", "trainyard-notify.service"):
        assert "CUDA_VISIBLE_DEVICES=" in one(parse_unit(UNITS_DIR / name), "Service", "Environment").split()
    web = parse_unit(UNITS_DIR / "trainyard-web.service")
    assert "trainyard-migrate.service" in one(web, "Unit", "After").split()


def test_systemd_commands_are_the_projects_and_cover_every_queue():
    venv_bin = Path(sys.executable).parent  # the .venv that `make` builds, as in INSTALL_DIR
    consumed = {}
    for name in UNITS:
        unit = parse_unit(UNITS_DIR / name)
        argv = shlex.split(expand_specifiers(one(unit, "Service", "ExecStart"), instance="0"))
        program = Path(argv[0])
        assert program.parent == Path(INSTALL_DIR) / ".venv" / "bin", argv[0]
        assert (venv_bin / program.name).is_file(), f"the venv has no {program.name}"
        for queue in check_command(argv):
            consumed.setdefault(queue, []).append(name)
    assert set(consumed) == routed_queues()
    assert consumed["train"] == ["trainyard-worker@.service"]
    web = shlex.split(one(parse_unit(UNITS_DIR / "trainyard-web.service"), "Service", "ExecStart"))
    assert web[1:3] == ["manage.py", "runweb"]
    worker = shlex.split(expand_specifiers(one(parse_unit(UNITS_DIR / "trainyard-worker@.service"),
                                               "Service", "ExecStart"), instance="3"))
    assert worker[worker.index("-n") + 1] == "gpu3@%h"  # celery's %h: this machine's host name


def test_a_systemd_specifier_that_is_not_meant_fails_the_check():
    with pytest.raises(AssertionError, match="specifier %h"):
        expand_specifiers("celery worker -n gpu%i@%h", "0")


def systemd_verify(tmp_path: Path, edit=lambda name, text: text) -> list[str]:
    """systemd's own parser on the units: unknown keys, bad values, missing executables. The units
    name the install dir /opt/trainyard; here it is a folder whose .venv/bin holds this venv's
    programs. What it says about our units (it exits 0 on keys it ignores with a warning)."""
    install = tmp_path / "trainyard"
    (install / ".venv" / "bin").mkdir(parents=True)
    for program in ("python", "celery"):
        (install / ".venv" / "bin" / program).symlink_to(Path(sys.executable).parent / program)
    units = tmp_path / "units"
    units.mkdir()
    for name in UNITS:
        (units / name).write_text(edit(name, (UNITS_DIR / name).read_text().replace(INSTALL_DIR, str(install))))
    targets = [str(units / name.replace("@.", "@0.")) for name in UNITS]  # the template as instance 0
    result = subprocess.run(["systemd-analyze", "verify", *targets], capture_output=True, text=True, timeout=120)
    said = [line for line in (result.stdout + result.stderr).splitlines() if "trainyard" in line]
    return said or ([f"exit status {result.returncode}"] if result.returncode else [])


needs_systemd = pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze is not installed")


@needs_systemd
def test_systemd_analyze_verifies_every_unit(tmp_path):
    assert systemd_verify(tmp_path) == []


@needs_systemd
@pytest.mark.parametrize("broken", ["KillMode=mixd", "Restrat=on-failure", "bin/celeryy"])
def test_systemd_analyze_catches_a_broken_unit(tmp_path, broken):
    right = {"KillMode=mixd": "KillMode=mixed", "Restrat=on-failure": "Restart=on-failure",
             "bin/celeryy": "bin/celery"}[broken]

    def edit(name, text):
        return text.replace(right, broken) if name == "trainyard-worker@.service" else text

    assert any("trainyard-worker@" in line for line in systemd_verify(tmp_path, edit))
