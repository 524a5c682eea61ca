"""``POST /v1/cards/score``: card rows scored by the classifier, the anomaly model or both,
in the shape of the reference REST API; rows go to the sink when the service has one."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from fraudlens._time import utcnow
from fraudlens.errors import UnavailableError
from fraudlens.scoring import CardScores
from fraudlens.service._parse import align_metadata, check_metadata
from fraudlens.service._responses import error_docs, model_reply
from fraudlens.service._schemas import (
    AnomalyResult,
    CardScoreRequest,
    CardScoreResponse,
    FraudClassifierResult,
)
from fraudlens.service.deps import ForServices, MetricsDep, ModelsDep, SinkDep
from fraudlens.service.routes._scoring import cards_scored

__all__ = ["router"]

# Machines score: a service token when authentication is on.
router = APIRouter(prefix="/v1/cards", tags=["cards"], dependencies=[ForServices])


@router.post(
    "/score",
    response_model=CardScoreResponse,
    response_model_exclude_none=True,
    responses=error_docs(400, 408, 413, 415, 422, 503),
)
async def cards_score(
    req: CardScoreRequest, models: ModelsDep, metrics: MetricsDep, sink: SinkDep
) -> Any:
    """Score card rows with the fraud classifier, the anomaly detector, or both.

    ``prediction`` is the one flag rule: the classifier's score above its own threshold.
    """
    check_metadata(req.metadata)  # before any work
    wanted = [req.model] if req.model else ["fraud_classifier", "anomaly_detector"]
    classifier = await models.get("cards-classifier") if "fraud_classifier" in wanted else None
    anomaly = await models.get("cards-anomaly") if "anomaly_detector" in wanted else None
    text = req.data if isinstance(req.data, str) else None
    rows = None if isinstance(req.data, str) else req.data
    res = await cards_scored(
        metrics, classifier, anomaly, text=text, rows=rows, explain=req.explain, top=req.top
    )
    out = CardScoreResponse()
    if res.scores is not None:
        out.fraud_classifier = FraudClassifierResult(
            pred_proba=res.scores.tolist(),
            prediction=res.flagged.astype(int).tolist(),
            reasons=res.explanations if req.explain else None,  # type: ignore[arg-type]
        )
    if res.anomaly_scores is not None:
        out.anomaly_detector = AnomalyResult(score=res.anomaly_scores.tolist())
    meta = align_metadata(req.metadata, len(res))
    if sink is not None:
        try:
            await run_in_threadpool(sink.put_many, _sink_rows(res, meta))
        except OSError as exc:
            # The rows were not accepted (a full disk, a folder gone, S3 out of reach): an
            # outage of the sink, which the client retries after, as for the store.
            raise UnavailableError(f"cannot write to the sink: {exc}", what="sink") from exc
    return model_reply(out.model_dump(exclude_none=True), ",".join(res.models))


#: The fields of a sink row that the service writes itself.
SINK_FIELDS = (
    "timestamp",
    "metadata",
    "prediction",
    "score",
    "threshold",
    "anomaly_score",
    "reasons",
    "model",
)


def _sink_rows(res: CardScores, meta: list[Any]) -> list[dict[str, Any]]:
    """One sink record per row: its metadata, the scores, the model(s) and the threshold.

    A metadata object's keys become columns beside the service's own fields
    (:data:`SINK_FIELDS`); the service's fields win: a metadata key that names one of
    them (``timestamp``, say) is written as ``metadata.<key>`` instead, so a client can
    neither back-date a row nor overwrite its score. Metadata that is not an object is
    written as JSON in the ``metadata`` column.
    """
    now = utcnow().isoformat()
    rows = []
    scores = res.scores.tolist() if res.scores is not None else None
    anomaly = res.anomaly_scores.tolist() if res.anomaly_scores is not None else None
    flagged = res.flagged.astype(int).tolist()
    for i, m in enumerate(meta):
        row: dict[str, Any] = {"timestamp": now}
        if isinstance(m, dict):
            for key, value in m.items():
                name = str(key)
                # (A client's own "metadata.timestamp" beside "timestamp": the first wins.)
                row.setdefault(f"metadata.{name}" if name in SINK_FIELDS else name, value)
        elif m is not None:
            row["metadata"] = json.dumps(m)
        if scores is not None:
            row["prediction"] = flagged[i]
            row["score"] = scores[i]
            row["threshold"] = res.threshold
        if anomaly is not None:
            row["anomaly_score"] = anomaly[i]
        if res.explanations is not None:
            row["reasons"] = json.dumps(res.explanations[i])
        row["model"] = ",".join(res.models)
        rows.append(row)
    return rows
