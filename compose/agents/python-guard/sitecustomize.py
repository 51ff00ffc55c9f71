# obs-stack guard for Python auto-instrumentation.
#
# `obs-stack inject` puts this file's directory FIRST on PYTHONPATH, the image's own PYTHONPATH
# in the middle and the agent packages LAST. Python imports `sitecustomize` at startup; this
# guard decides whether it is safe to start OpenTelemetry and, if so, calls the upstream
# `opentelemetry.instrumentation.auto_instrumentation.initialize()`. It never raises: on any
# problem it prints one line to stderr, removes itself (and the agent) from PYTHONPATH so child
# processes do not retry, and the app runs uninstrumented.
#
# It is embedded in the obs-stack binary and written into the agent volume by the init step,
# so it works with the unmodified upstream Operator images.
#
# Must parse on old interpreters too (no f-strings), so the version gate can run.
import os
import sys

_PREFIX = "[obs-stack python guard] "


def _say(msg):
    try:
        sys.stderr.write(_PREFIX + msg + "\n")
    except Exception:
        pass


def _debug(msg):
    if os.environ.get("OBS_STACK_GUARD_DEBUG") == "1":
        _say(msg)


def _paths():
    guard = os.path.dirname(os.path.abspath(__file__))
    agent = os.environ.get("OBS_STACK_PYTHON_AGENT") or os.path.dirname(guard)
    return guard, agent


def _norm(p):
    try:
        return os.path.realpath(p)
    except Exception:
        return p


def _strip_from_pythonpath(dirs):
    """Removes `dirs` from PYTHONPATH (for child processes) and from sys.path (this one)."""
    dirs = set(_norm(d) for d in dirs)
    entries = [e for e in os.environ.get("PYTHONPATH", "").split(os.pathsep) if e]
    kept = [e for e in entries if _norm(e) not in dirs]
    if kept:
        os.environ["PYTHONPATH"] = os.pathsep.join(kept)
    else:
        os.environ.pop("PYTHONPATH", None)
    sys.path[:] = [p for p in sys.path if _norm(p) not in dirs]


def _disable(reason, guard, agent):
    _strip_from_pythonpath([guard, agent])
    os.environ["OBS_STACK_PYTHON_GUARD"] = "disabled"
    argv = " ".join(getattr(sys, "argv", []) or [])
    _say("auto-instrumentation disabled: " + reason + (" [" + argv + "]" if argv else ""))


def _app_has_opentelemetry(agent):
    """A reason when the app's own packages (not the agent's) ship the OpenTelemetry SDK or an
    auto-instrumentation of their own (which includes the `opentelemetry-instrument` wrapper)."""
    agent_n = _norm(agent)
    for p in sys.path:
        if not p or _norm(p).startswith(agent_n):
            continue
        for name in ("opentelemetry/sdk", "opentelemetry/instrumentation/auto_instrumentation"):
            if os.path.isdir(os.path.join(p, name)):
                return "the app already ships OpenTelemetry (" + os.path.join(p, name) + ")"
    return None


def _app_paths():
    """The directories Python (or gunicorn/uvicorn) will put on sys.path for the app but has
    not yet while sitecustomize runs: the working directory and the script's directory."""
    found = []
    try:
        found.append(os.getcwd())
    except Exception:
        pass
    argv = getattr(sys, "argv", None) or [""]
    if argv[0] and os.path.isfile(argv[0]):
        found.append(os.path.dirname(os.path.abspath(argv[0])))
    out = []
    for p in found:
        if p not in sys.path and p not in out:
            out.append(p)
    return out


def _django_settings_ready():
    """Django's instrumentation reads the settings while initialising; if they cannot be
    imported yet it calls settings.configure() with EMPTY settings and the app breaks
    (OpenTelemetry Operator issue #2302). Check first; if they cannot be imported, keep the
    Django instrumentation off for this process rather than break the app."""
    module = os.environ.get("DJANGO_SETTINGS_MODULE")
    if not module:
        return True
    try:
        import importlib

        importlib.import_module(module)
        return True
    except Exception as e:
        _say(
            "Django settings %s cannot be imported at startup (%s: %s): Django instrumentation "
            "off for this process" % (module, type(e).__name__, e)
        )
        return False


def _chain_app_sitecustomize(guard, agent):
    """Runs the app's own sitecustomize.py, if any, which this guard shadows."""
    skip = set(_norm(d) for d in (guard, agent))
    for p in sys.path:
        if not p or _norm(p) in skip:
            continue
        candidate = os.path.join(p, "sitecustomize.py")
        if os.path.isfile(candidate):
            try:
                with open(candidate) as f:
                    code = compile(f.read(), candidate, "exec")
                exec(code, {"__name__": "sitecustomize", "__file__": candidate})
            except Exception as e:  # the app's own hook failing is the app's business
                _say("the app's own sitecustomize.py failed: " + repr(e))
            return


# OBS_STACK_LAYER_SPANS=off (the prod profile): options passed to the instrumentors the agent
# loads, through the distro's documented hook (BaseDistro.load_instrumentor, "distros can
# override this method to ... pass additional arguments"). FastAPI: no internal span for each
# ASGI `http send` / `http receive` message (2-3 per request, costly even unsampled); Flask: no
# SQL-commenter context attached per request. Server spans, their route and the HTTP metrics
# are unchanged. Only options these instrumentors are known to read are listed.
_LAYER_SPANS_OFF = {
    "fastapi": {"exclude_spans": ["receive", "send"]},
    "flask": {"enable_commenter": False},
}


def _layer_spans_off():
    if os.environ.get("OBS_STACK_LAYER_SPANS", "").strip().lower() not in ("off", "false", "0", "no"):
        return
    try:
        from opentelemetry.instrumentation import distro as _distro
    except Exception as e:
        _say("OBS_STACK_LAYER_SPANS=off not applied: " + repr(e))
        return
    original = getattr(_distro.BaseDistro, "load_instrumentor", None)
    if original is None or getattr(original, "_obs_stack", False):
        return

    def load_instrumentor(self, entry_point, **kwargs):
        extra = _LAYER_SPANS_OFF.get(getattr(entry_point, "name", ""))
        if extra:
            merged = dict(extra)
            merged.update(kwargs)
            kwargs = merged
        return original(self, entry_point, **kwargs)

    load_instrumentor._obs_stack = True
    _distro.BaseDistro.load_instrumentor = load_instrumentor


def _run():
    guard, agent = _paths()
    if os.environ.get("OBS_STACK_PYTHON_GUARD") == "disabled":
        _disable("disabled by a parent process", guard, agent)
        return
    if os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        _disable("OTEL_SDK_DISABLED=true", guard, agent)
        return
    v = sys.version_info
    minimum = os.environ.get("OBS_STACK_PYTHON_MIN", "3.9").split(".")
    try:
        min_t = (int(minimum[0]), int(minimum[1]))
    except Exception:
        min_t = (3, 9)
    if (v[0], v[1]) < min_t:
        _disable("unsupported Python version " + sys.version.split()[0], guard, agent)
        return
    abi = os.environ.get("OBS_STACK_PYTHON_ABI", "")
    if abi and abi != "%d.%d" % (v[0], v[1]):
        _disable(
            "the agent was built for Python " + abi + ", this is " + sys.version.split()[0], guard, agent
        )
        return
    marker = os.path.join(agent, "opentelemetry", "instrumentation", "auto_instrumentation", "__init__.py")
    if not os.path.isfile(marker):
        _disable("agent not found at " + agent, guard, agent)
        return
    protocol = os.environ.setdefault("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    if protocol == "grpc":
        _disable("OTEL_EXPORTER_OTLP_PROTOCOL=grpc: the agent ships the HTTP exporter only", guard, agent)
        return
    conflict = _app_has_opentelemetry(agent)
    if conflict:
        _disable(conflict, guard, agent)
        return
    # The guard's own directory leaves sys.path (children still get it via PYTHONPATH); the
    # agent stays LAST on sys.path so the app's own package versions win.
    sys.path[:] = [p for p in sys.path if _norm(p) != _norm(guard)]
    sys.path[:] = [p for p in sys.path if _norm(p) != _norm(agent)] + [agent]
    # The app's own import paths, for the duration of initialize() only (Python adds them
    # itself right after sitecustomize), so instrumentations that read app config can.
    temp_paths = _app_paths()
    sys.path[:0] = temp_paths
    django_off = not _django_settings_ready()
    if django_off:
        os.environ["OTEL_PYTHON_DJANGO_INSTRUMENT"] = "False"
    try:
        from opentelemetry.instrumentation import auto_instrumentation

        _layer_spans_off()

        try:
            auto_instrumentation.initialize(swallow_exceptions=False)
        except TypeError:  # older releases: no keyword
            auto_instrumentation.initialize()
        _debug("initialized in pid %d" % os.getpid())
    except BaseException as e:  # SystemExit from a broken agent must not kill the app either
        _disable("initialising the agent failed: %s: %s" % (type(e).__name__, e), guard, agent)
    finally:
        sys.path[:] = [p for p in sys.path if p not in temp_paths]
        if django_off:
            os.environ.pop("OTEL_PYTHON_DJANGO_INSTRUMENT", None)
    _chain_app_sitecustomize(guard, agent)


try:
    _run()
except BaseException as _e:  # never break the interpreter start
    _say("guard error, app continues uninstrumented: " + repr(_e))
