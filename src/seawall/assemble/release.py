"""The gateway's rollout service (`release:`), built when some model is under `traffic:`.

Rollouts move the routers' traffic splits (`assembly.routers`); their state and decisions live
in the control plane's database and audit log, so a restarted gateway resumes each rollout at
its step. Guardrails read the routers' own per-version windows (error rate, p95 latency), the
drift monitors' latest reports, Prometheus (PromQL, with `release.prometheus_url`), Python
functions, or values pushed through the admin API. With PostgreSQL, an advisory-lock lease
lets one replica at a time run the controllers; SQLite is one host, always the leader.

The service starts after the models load (its controllers may move traffic at once) and stops
before they close. Plans named in `release.plans` are started then, unless that model's rollout
of that canary has run already.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from seawall.assemble.control import ControlPlane
from seawall.assemble.parts import Assembly
from seawall.clock import Clock
from seawall.config import SeawallConfig
from seawall.errors import ConflictError, InvalidInputError, NotFoundError

if TYPE_CHECKING:
    import aiohttp

    from seawall.monitor.report import DriftReport
    from seawall.release.metrics import MetricSource
    from seawall.release.plan import RolloutPlan
    from seawall.release.service import RolloutService

__all__ = ["ReleaseWiring", "ShadowShift", "assemble_release"]

logger = logging.getLogger("seawall.release")

#: Seconds between attempts to open the rollout service when the database is down.
RETRY_S = 30.0


class ReleaseWiring:
    """Builds, starts and stops the rollout service of one assembly."""

    def __init__(
        self, config: SeawallConfig, assembly: Assembly, control: ControlPlane, clock: Clock
    ) -> None:
        self._config = config
        self._assembly = assembly
        self._control = control
        self._clock = clock
        self._service: RolloutService | None = None
        self._lease: Any = None
        self._http: aiohttp.ClientSession | None = None
        self._registry: Any = None
        self._retry: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start the service; if the database cannot be reached, keep serving and try again.

        Routing works without the database: only rollouts wait for it (the admin API's rollout
        routes answer 404 meanwhile)."""
        try:
            await self._open()
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("rollouts: could not open the database; trying again every 30 s")
            self._retry = asyncio.create_task(self._open_later(), name="rollouts: open")
            return
        # A bad plan file in `release.plans` fails the start, naming the file and the field.
        for path in self._config.release.plans:
            await self._start_plan(path)

    async def _open_later(self) -> None:
        while self._service is None:
            await self._clock.sleep(RETRY_S)
            try:
                await self._open()
                for path in self._config.release.plans:
                    await self._start_plan(path)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("rollouts: could not open the database; trying again in 30 s")

    async def _open(self) -> None:
        from seawall.release.adapters import RegistryApprovals
        from seawall.release.lease import AdvisoryLease
        from seawall.release.service import RolloutService

        database, audit = await self._control.database(), await self._control.audit()
        registry = self._registry = await self._control.registry()
        self._lease = AdvisoryLease(database)
        self._service = RolloutService(
            database,
            audit,
            clock=self._clock,
            traffic=self._traffic,
            metrics=self._metrics,
            approvals=RegistryApprovals(registry),
            leader=self._lease,
        )
        await self._service.recover()

    async def service(self) -> RolloutService:
        """The running service (the admin API's rollout routes)."""
        if self._service is None:
            raise NotFoundError("the rollout service has not started")
        return self._service

    async def stop(self) -> None:
        """Stop the controllers (their state stays in the database) and the shared clients."""
        retry, self._retry = self._retry, None
        if retry is not None:
            retry.cancel()
            await asyncio.gather(retry, return_exceptions=True)
        service, self._service = self._service, None
        if service is not None:
            await service.aclose()
        lease, self._lease = self._lease, None
        if lease is not None:
            await lease.aclose()
        http, self._http = self._http, None
        if http is not None:
            await http.close()

    async def _start_plan(self, path: str) -> None:
        import yaml

        from seawall.config.release import parse_plan

        where = self._config.resolve_path(path)
        text = await asyncio.to_thread(where.read_text, encoding="utf-8")
        plan = parse_plan(yaml.safe_load(text), source=str(where))
        assert self._service is not None
        done = [r for r in await self._service.list(limit=1000) if r.model == plan.model]
        if any(r.canary_version == plan.canary_version for r in done):
            return  # this canary's rollout ran, or runs: a restart must not start it again
        try:
            await self._service.start(plan, actor=self._config.release.actor)
        except ConflictError as exc:  # another canary's rollout is live
            logger.warning("rollout plan not started", extra={"plan": str(where), "why": str(exc)})

    def _router(self, plan: RolloutPlan) -> Any:
        router = self._assembly.routers.get(plan.model)
        if router is None:
            routed = ", ".join(sorted(self._assembly.routers)) or "none"
            raise InvalidInputError(
                "model", f"{plan.model!r} is not under traffic: in the config (routed: {routed})"
            )
        versions = router.split.versions or frozenset(
            self._assembly.repository.versions(plan.model)
        )
        for field, version in (
            ("stable_version", plan.stable_version),
            ("canary_version", plan.canary_version),
        ):
            if version not in versions:
                known = ", ".join(sorted(versions))
                raise InvalidInputError(
                    field, f"{plan.model!r} has no version {version!r} (versions: {known})"
                )
        return router

    def _traffic(self, plan: RolloutPlan) -> Any:
        from seawall.release.adapters import SplitTraffic

        router = self._router(plan)
        registry_models = any(
            m.name == plan.model and m.backend.kind == "registry" for m in self._config.models
        )
        alias = self._config.release.registry_alias if registry_models else None
        return SplitTraffic(
            router.split,
            model=plan.model,
            canary=plan.canary_version,
            alias=alias,
            registry=self._registry if alias else None,
            actor=self._config.release.actor,
        )

    def _metrics(self, plan: RolloutPlan) -> MetricSource:
        from seawall.release.adapters import RouterMetrics
        from seawall.release.metrics import DriftSource, MetricRouter
        from seawall.release.plan import MetricKind

        router = self._router(plan)
        own = RouterMetrics(
            router, clock=self._clock, min_requests=self._config.release.min_requests
        )
        functions = [m.function for m in plan.metrics() if m.function]
        return MetricRouter(
            builtin={
                MetricKind.ERROR_RATE: own,
                MetricKind.LATENCY_P95_S: own,
                MetricKind.DRIFT_SCORE: DriftSource(self._drift_of(plan.model)),
                MetricKind.PREDICTION_SHIFT: ShadowShift(
                    router, clock=self._clock, min_samples=self._config.release.min_requests
                ),
            },
            prometheus=self._prometheus(plan),
            callables=self._callables(functions, plan.model),
        )

    @staticmethod
    def _callables(functions: list[str], model: str) -> MetricSource | None:
        from seawall.release.metrics import CallableSource

        if not functions:
            return None
        try:
            return CallableSource(functions, model=model)
        except ValueError as exc:  # a path that does not import: the plan's fault, a 400
            raise InvalidInputError("steps", str(exc)) from None

    def _prometheus(self, plan: RolloutPlan) -> MetricSource | None:
        queries = [m.name for m in plan.metrics() if m.query]
        if not queries:
            return None
        url = self._config.release.prometheus_url
        if url is None:
            raise InvalidInputError(
                "steps",
                f"guardrail metric(s) {', '.join(queries)} query Prometheus, and the gateway's "
                "release.prometheus_url is not set",
            )
        import aiohttp

        from seawall.release.prometheus import PrometheusSource

        if self._http is None:
            self._http = aiohttp.ClientSession()
        return PrometheusSource(url, self._http, model=plan.model)

    def _drift_of(self, model: str) -> Any:
        monitors = self._assembly.monitors

        async def latest(version: str) -> DriftReport | None:
            for label, monitor in monitors.items():
                if label.rsplit(":", 1)[0] == model and version in monitor.latest():
                    return monitor.latest()[version]
            return None

        return latest


class ShadowShift:
    """`prediction_shift` of a version: for the shadow version, the share of its answers that
    differ from the primary's (1 - agreement); for any other, the distance of its live
    predictions from the stable version's (`seawall.release.shift`)."""

    def __init__(self, router: Any, *, clock: Clock, min_samples: int) -> None:
        from seawall.release.shift import PredictionShift

        self._router = router
        self._live = PredictionShift(router, clock=clock, min_samples=min_samples)

    async def value(self, metric: Any, variant_version: str, window_s: float) -> float:
        from seawall.release.errors import MetricUnavailableError

        shadow = self._router.shadow
        if shadow is None or shadow.version != variant_version:
            return await self._live.value(metric, variant_version, window_s)
        agreement = shadow.stats.snapshot().agreement_rate
        if agreement is None:
            raise MetricUnavailableError(f"{metric.name}: no shadow answer compared yet")
        return 1.0 - float(agreement)


def assemble_release(config: SeawallConfig, assembly: Assembly, clock: Clock) -> None:
    """Give the assembly its rollout service when some model is under `traffic:`."""
    shared = assembly.shared
    if not config.traffic or shared is None or shared.control is None:
        return
    control = shared.control
    wiring = ReleaseWiring(config, assembly, control, clock)
    control.provide_rollouts(wiring.service)
    assembly.after_load.append(wiring.start)
    assembly.closers.insert(0, wiring.stop)  # before the routers and the database close
