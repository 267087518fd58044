"""The daemon's configuration file ``casbackup.yaml``: its schema (the keys of every
section and job type) and the validation of each section into the job model
(``config_model.py``). The YAML reader with line-numbered errors is ``config_nodes.py``;
finding the file and resolving password references live in ``secrets.py``. This module
is the configuration's public API: the model's classes are re-exported here.

Invariants:

* Every problem is a ``UsageError`` naming the file, the line and the dotted key, e.g.
  ``casbackup.yaml:12: jobs.nightly.cron: invalid cron expression '0 25 * * *': …``.
  Unknown keys, duplicate keys, wrong types and references to undefined stores or
  sources are errors, never ignored. Every store, source, job, watch and section is
  checked even after an error: all problems are reported at once (``ConfigErrors``, one
  line each, in file order), an unknown key or name with a "did you mean" when one is
  close, and an entry that is invalid itself is not reported again where it is used.
* Secrets are never in the file and never in a message: a store's password is a
  reference (``{env: VAR}``, ``{file: PATH}`` or ``{command: CMD}``); a literal string is
  refused without being echoed. ``password`` is left out only for an unencrypted store.
* Relative paths (local store URLs, source paths, ``exclude_file``, password files, the
  ``state`` file) are relative to the directory holding the configuration file; ``~`` is
  expanded.
* Loading reads the one file and nothing else; ``secrets.resolve_password`` is the only
  code that reads the environment, other files or runs commands for a secret.
* Cron expressions: 5 fields, or 6 with seconds as the *last* field (see ``schedule``).
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any, TypeVar, cast

import yaml
from yaml.nodes import Node, ScalarNode

from casbackup.daemon.schedule import validate_cron
from casbackup.errors import UsageError
from casbackup.model.snapshot import BACKUP_TYPES
from casbackup.ops.retention import Policy, parse_duration
from casbackup.ops.verify import parse_subset
from casbackup.store import check_url

from .config_model import (  # re-exported: the config's public API
    BackupType,
    Config,
    JobConfig,
    JobType,
    MetricsConfig,
    NotifyConfig,
    SourceConfig,
    StoreConfig,
    WatchConfig,
)
from .config_nodes import Broken, ConfigErrors, NodeReader, line_of, opt
from .hooks import Hooks
from .secrets import (  # re-exported: the config's public API
    CONFIG_ENV_VAR,
    PasswordRef,
    find_config_path,
    resolve_password,
)

__all__ = ["CONFIG_ENV_VAR", "BackupType", "Config", "ConfigErrors", "JobConfig", "JobType",
           "MetricsConfig", "NotifyConfig", "PasswordRef", "SourceConfig", "StoreConfig",
           "WatchConfig", "find_config_path", "load_config", "missing_paths", "parse_config",
           "resolve_password"]

T = TypeVar("T")


def missing_paths(config: Config) -> list[str]:
    """One problem line per source path or pattern file that does not exist (for ``config
    check`` and ``test``; the daemon itself runs such a job and reports its failure, since
    a disk may be mounted later)."""
    out = []
    for src in config.sources.values():
        where = f"sources.{src.name}"
        line = config.lines.get(where, 1)
        for p in src.paths:
            if not os.path.lexists(p):
                out.append(f"{config.path}:{line}: {where}.paths: {p} does not exist")
        for p in src.pattern_files():
            if not os.path.isfile(p):
                out.append(f"{config.path}:{line}: {where}: exclude file {p} does not exist")
    return out


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate the configuration file at ``path``."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) else "not UTF-8"
        raise UsageError(f"{p}: cannot read configuration: {reason}") from e
    return parse_config(text, str(p), p.resolve().parent)


def parse_config(text: str, name: str = "casbackup.yaml", base_dir: Path | None = None) -> Config:
    """Validate configuration ``text``; ``name`` is used in messages, relative paths are
    resolved against ``base_dir`` (default: the current directory)."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as e:
        line = e.problem_mark.line + 1 if e.problem_mark else 1
        problem = "; ".join(p for p in (e.context, e.problem) if p)
        raise UsageError(f"{name}:{line}: invalid YAML: {problem}") from e
    except yaml.YAMLError as e:
        raise UsageError(f"{name}: invalid YAML: {e}") from e
    if root is None:
        raise UsageError(f"{name}:1: the configuration is empty")
    return _Loader(name, base_dir or Path.cwd()).config(root)


_LISTEN_RE = re.compile(r"^(?:\[([0-9A-Fa-f:.]+)\]|([^:\[\]]+)):(\d{1,5})$")
_MERGE_TAG = "tag:yaml.org,2002:merge"
_PW_FORMS = "{env: VAR}, {file: PATH} or {command: CMD}"
_TOP_KEYS = ("stores", "sources", "jobs", "watches", "metrics", "state", "hooks", "notify")
_HOOK_KEYS = ("before", "after", "on_error", "finally", "timeout")
_NOTIFY_KEYS = ("events", "urls", "webhooks", "healthchecks")
_NOTIFY_EVENTS = ("start", "success", "failure")
_SOURCE_KEYS = ("paths", "excludes", "exclude_file", "exclude_files", "one_file_system",
                "exclude_caches", "iexcludes", "exclude_if_present", "exclude_larger_than")
_WATCH_KEYS = ("source", "store", "debounce", "max_delay", "sync_to")
_COMMON_JOB_KEYS = ("type", "cron", "store", "retries", "retry_delay", "catch_up", "timeout",
                    "hooks", "notify")
# per job type: (the keys it allows besides the common ones, the keys it requires)
_JOB_KEYS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "backup": (("source", "backup_type", "tags"), ("source",)),
    "dump": (("command", "filename", "tags"), ("command", "filename")),
    "sync": (("to",), ("to",)),
    "forget": (("policy", "prune"), ("policy",)),
    "gc": ((), ()),
    "verify": (("read_data_subset",), ()),
}
_ALL_JOB_KEYS = (*_COMMON_JOB_KEYS, *(k for allowed, _ in _JOB_KEYS.values() for k in allowed))
_POLICY_KEYS = (
    "keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly",
    "keep_within", "keep_tags", "group_by",
)  # fmt: skip


class _Loader(NodeReader):
    """The sections of one file, read through ``NodeReader``'s typed accessors."""

    def config(self, root: Node) -> Config:
        top = self.mapping(root, "<top>", _TOP_KEYS, ("stores",))
        stores = self.table(top, "stores", "store", self.store)
        if not stores and not self.broken:
            self.problems.append(self.error(top["stores"], "stores", "define at least one store"))
        sources = self.table(top, "sources", "source", self.source)
        jobs = self.table(top, "jobs", "job", lambda n, v: self.job(n, v, stores, sources))
        watches = []
        if "watches" in top:
            items = self.collect("section", "watches", partial(self.items, top["watches"],
                                                               "watches")) or []  # fmt: skip
            for w, at in items:
                got = self.collect("watch", at, partial(self.watch, w, at, stores, sources))
                if got is not None:
                    watches.append(got)
        metrics = (self.collect("section", "metrics", lambda: self.metrics(top["metrics"]))
                   if "metrics" in top else None)  # fmt: skip
        state = (self.collect("section", "state", lambda: self.path(top["state"], "state"))
                 if "state" in top else None)  # fmt: skip
        hooks = (self.collect("section", "hooks", lambda: self.hooks(top["hooks"], "hooks"))
                 if "hooks" in top else None)  # fmt: skip
        notify = (self.collect("section", "notify", lambda: self.notify(top["notify"], "notify"))
                  if "notify" in top else None)  # fmt: skip
        problems = [p for p in self.problems if not isinstance(p, Broken)]
        if problems:
            raise ConfigErrors(sorted(problems, key=line_of))
        return Config(self.name, stores, sources, jobs, tuple(watches), metrics, state,
                      hooks, notify, self.lines)

    def table(self, top: dict[str, Node], section: str, kind: str,
              read: Callable[[str, Node], T]) -> dict[str, T]:
        """The valid entries of a ``name: {…}`` section; the others' errors are kept."""
        if section not in top:
            return {}
        nodes = self.collect("section", section, lambda: self.mapping(top[section], section,
                                                                      None))  # fmt: skip
        out: dict[str, T] = {}
        for name, node in (nodes or {}).items():
            self.lines[f"{section}.{name}"] = node.start_mark.line + 1
            got = self.collect(kind, name, partial(read, name, node))
            if got is not None:
                out[name] = got
        return out

    def store(self, name: str, node: Node) -> StoreConfig:
        where = f"stores.{name}"
        m = self.mapping(node, where, ("url", "password", "cache_dir", "no_cache",
                                       "cache_limit"), ("url",))
        url = self.string(m["url"], f"{where}.url")
        try:
            check_url(url)  # s3://KEY:SECRET@…: refused here, without echoing it
        except UsageError as e:
            raise self.error(m["url"], f"{where}.url", str(e)) from None
        if "://" not in url:
            url = self.path(m["url"], f"{where}.url")
        password = self.password(m["password"], f"{where}.password") if "password" in m else None
        cache_dir = opt(m, "cache_dir", where, self.path, None)
        no_cache = opt(m, "no_cache", where, self.boolean, False)
        if cache_dir is not None and no_cache:
            raise self.error(m["no_cache"], f"{where}.no_cache",
                             "cache_dir and no_cache exclude each other")
        limit = opt(m, "cache_limit", where, self.size, None)
        return StoreConfig(name, url, password, cache_dir, no_cache, limit)

    def password(self, node: Node, where: str, what: str = "password") -> PasswordRef:
        if isinstance(node, ScalarNode):  # never echo the value: it may be the secret
            raise self.error(node, where, f"a literal {what} is not allowed; use {_PW_FORMS}")
        m = self.mapping(node, where, ("env", "file", "command"))
        if len(m) != 1:
            raise self.error(node, where, f"give exactly one of {_PW_FORMS}")
        ((kind, value),) = m.items()
        at = f"{where}.{kind}"
        if kind == "file":
            return PasswordRef("file", self.path(value, at))
        text = self.string(value, at)
        if kind == "command":
            try:
                words = shlex.split(text)
            except ValueError as e:
                raise self.error(value, at, f"cannot parse the command: {e}") from None
            if not words:
                raise self.error(value, at, "the command is empty")
            return PasswordRef("command", text)
        return PasswordRef("env", text)

    def source(self, name: str, node: Node) -> SourceConfig:
        where = f"sources.{name}"
        m = self.mapping(node, where, _SOURCE_KEYS, ("paths",))
        paths = tuple(self.path(p, at) for p, at in self.items(m["paths"], f"{where}.paths"))
        if not paths:
            raise self.error(m["paths"], f"{where}.paths", "give at least one path")
        return SourceConfig(
            name,
            paths,
            excludes=opt(m, "excludes", where, self.strings, ()),
            exclude_file=opt(m, "exclude_file", where, self.path, None),
            one_file_system=opt(m, "one_file_system", where, self.boolean, False),
            exclude_caches=opt(m, "exclude_caches", where, self.boolean, False),
            exclude_files=opt(m, "exclude_files", where, self.paths, ()),
            iexcludes=opt(m, "iexcludes", where, self.strings, ()),
            exclude_if_present=opt(m, "exclude_if_present", where, self.strings, ()),
            exclude_larger_than=opt(m, "exclude_larger_than", where, self.size, None),
        )

    def job(
        self, name: str, node: Node, stores: Mapping[str, object], sources: Mapping[str, object]
    ) -> JobConfig:
        where = f"jobs.{name}"
        m = self.mapping(node, where, _ALL_JOB_KEYS, ("type", "cron", "store"))
        kind = self.string(m["type"], f"{where}.type", tuple(_JOB_KEYS))
        allowed, required = _JOB_KEYS[kind]
        for key, value in m.items():
            if key not in _COMMON_JOB_KEYS and key not in allowed:
                raise self.error(value, f"{where}.{key}", f"not allowed for a {kind} job")
        for key in required:
            if key not in m:
                raise self.error(node, where, f"missing required key {key!r} for a {kind} job")
        cron = self.string(m["cron"], f"{where}.cron")
        try:
            validate_cron(cron)
        except UsageError as e:
            raise self.error(m["cron"], f"{where}.cron", str(e)) from None
        store = self.ref(m["store"], f"{where}.store", stores, "store")
        to = opt(m, "to", where, lambda n, at: self.ref(n, at, stores, "store"), None)
        if to == store:
            raise self.error(m["to"], f"{where}.to", "a sync job needs two different stores")
        source = opt(m, "source", where, lambda n, at: self.ref(n, at, sources, "source"), None)
        backup_type = opt(
            m, "backup_type", where, lambda n, at: self.string(n, at, BACKUP_TYPES), "incremental"
        )
        return JobConfig(
            name=name,
            type=cast(JobType, kind),
            cron=cron,
            store=store,
            source=source,
            backup_type=cast(BackupType, backup_type),
            tags=opt(m, "tags", where, self.strings, ()),
            to=to,
            policy=opt(m, "policy", where, self.policy, None),
            prune=opt(m, "prune", where, self.boolean, False),
            read_data_subset=opt(m, "read_data_subset", where, self.subset, None),
            retries=opt(m, "retries", where, self.count, 0),
            retry_delay=opt(m, "retry_delay", where, partial(self.seconds, zero_ok=True), 60.0),
            catch_up=opt(m, "catch_up", where, self.boolean, False),
            timeout=opt(m, "timeout", where, self.seconds, None),
            command=opt(m, "command", where, self.string, None),
            filename=opt(m, "filename", where, self.filename, None),
            hooks=opt(m, "hooks", where, self.hooks, None),
            notify=opt(m, "notify", where, self.notify, None),
        )

    def hooks(self, node: Node, where: str) -> Hooks:
        m = self.mapping(node, where, _HOOK_KEYS)
        cmds = {k: self.commands(v, f"{where}.{k}") for k, v in m.items() if k != "timeout"}
        return Hooks(cmds.get("before", ()), cmds.get("after", ()), cmds.get("on_error", ()),
                     cmds.get("finally", ()), opt(m, "timeout", where, self.seconds, 300.0))

    def commands(self, node: Node, where: str) -> tuple[str, ...]:
        """One shell command, or a list of them."""
        if isinstance(node, ScalarNode):
            return (self.string(node, where),)
        return self.strings(node, where)

    def filename(self, node: Node, where: str) -> str:
        name = self.string(node, where)
        if "/" in name or name in (".", "..") or "\0" in name:
            raise self.error(node, where, f"expected a plain file name, not {name!r}")
        return name

    def notify(self, node: Node, where: str) -> NotifyConfig:
        m = self.mapping(node, where, _NOTIFY_KEYS)
        # "events", not "on": YAML 1.1 reads a bare `on` key as true
        events: tuple[str, ...] = ("failure",)
        if "events" in m:
            items = self.items(m["events"], f"{where}.events")
            events = tuple(self.string(n, at, _NOTIFY_EVENTS) for n, at in items)
        refs = {k: tuple(self.password(n, at, "URL") for n, at in self.items(m[k], f"{where}.{k}"))
                for k in ("urls", "webhooks") if k in m}  # fmt: skip
        hc = opt(m, "healthchecks", where, partial(self.password, what="URL"), None)
        if not refs and hc is None:
            raise self.error(node, where, "give urls, webhooks or healthchecks")
        return NotifyConfig(events, refs.get("urls", ()), refs.get("webhooks", ()), hc)

    def policy(self, node: Node, where: str) -> Policy:
        args: dict[str, Any] = {}
        for key, value in self.mapping(node, where, _POLICY_KEYS).items():
            at = f"{where}.{key}"
            if key in ("keep_tags", "group_by"):
                args[key] = self.strings(value, at)
            elif key == "keep_within":
                try:
                    args[key] = parse_duration(self.string(value, at))
                except UsageError as e:
                    raise self.error(value, at, str(e)) from None
            else:
                n = self.scalar(value, at)
                if isinstance(n, bool) or not isinstance(n, int) or n < -1:
                    raise self.error(value, at, f"expected a count (-1: unlimited), not {n!r}")
                args[key] = n
        try:
            policy = Policy(**args)
        except UsageError as e:
            raise self.error(node, where, str(e)) from None
        if policy.is_empty():
            raise self.error(node, where, "no policy given")
        return policy

    def subset(self, node: Node, where: str) -> str:
        text = self.string(node, where)
        try:
            parse_subset(text)  # verify's own parser: the daemon passes the text on
        except UsageError as e:
            raise self.error(node, where, str(e)) from None
        return text

    def watch(
        self, node: Node, where: str, stores: Mapping[str, object], sources: Mapping[str, object]
    ) -> WatchConfig:
        m = self.mapping(node, where, _WATCH_KEYS, ("source", "store"))
        source = self.ref(m["source"], f"{where}.source", sources, "source")
        store = self.ref(m["store"], f"{where}.store", stores, "store")
        debounce = opt(m, "debounce", where, self.seconds, 2.0)
        max_delay = opt(m, "max_delay", where, self.seconds, 60.0)
        if max_delay < debounce:
            raise self.error(
                m.get("max_delay", node),
                f"{where}.max_delay",
                f"must be >= debounce ({debounce:g})",
            )
        sync_to = []
        for item, at in self.items(m["sync_to"], f"{where}.sync_to") if "sync_to" in m else []:
            sync_to.append(self.ref(item, at, stores, "store"))
            if sync_to[-1] == store:
                raise self.error(item, at, "cannot sync a store to itself")
        return WatchConfig(source, store, debounce, max_delay, tuple(sync_to))

    def metrics(self, node: Node) -> MetricsConfig:
        m = self.mapping(node, "metrics", ("listen", "health_slack"), ("listen",))
        listen = self.string(m["listen"], "metrics.listen")
        match = _LISTEN_RE.match(listen)
        if not match or int(match.group(3)) > 65535:
            raise self.error(m["listen"], "metrics.listen", f"expected HOST:PORT, not {listen!r}")
        slack = opt(m, "health_slack", "metrics", self.fraction, 0.5)
        return MetricsConfig(match.group(1) or match.group(2), int(match.group(3)), slack)
