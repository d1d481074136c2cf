"""Prometheus metrics, one registry per app so two apps in one process (tests) never share counts."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Telemetry:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.predictions = Counter("datawheel_predictions_total", "Predictions served", registry=r)
        self.predict_seconds = Histogram("datawheel_predict_seconds", "Time to answer a prediction", registry=r)
        self.records = Counter("datawheel_records_total", "Records written", ["kind"], registry=r)
        self.feedback = Counter("datawheel_feedback_total", "Feedback written", ["type"], registry=r)
        self.rejected = Counter("datawheel_requests_rejected_total", "Client errors answered",
                                ["status", "reason"], registry=r)
        self.pii = Counter("datawheel_pii_findings_total", "Personal data found at the door", ["type", "action"],
                           registry=r)
        self.cycles = Counter("datawheel_cycles_total", "Cycles finished", ["status", "decision"], registry=r)
        self.champion = Gauge("datawheel_champion_version", "Model version serving", registry=r)
        self.erasures = Counter("datawheel_erasures_total", "Users erased", registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
