"""Request and reply bodies of the HTTP API (pydantic v2)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from fraudlens._ids import FORBIDDEN, ID_PATTERN, MAX_ID_LENGTH, id_problem

__all__ = [
    "CARD_ROW_EXAMPLE",
    "AccountCheckQueued",
    "AccountCheckRequest",
    "AccountId",
    "AnomalyResult",
    "AssignRequest",
    "AssignResult",
    "BulkReviewRequest",
    "BulkReviewResult",
    "CardReason",
    "CardScoreRequest",
    "CardScoreResponse",
    "ErrorResponse",
    "FraudClassifierResult",
    "IsoTime",
    "Label",
    "MarketAccountScore",
    "MarketScoreRequest",
    "MarketScoreResponse",
    "Name",
    "PingResponse",
    "ReviewEntry",
    "ReviewRequest",
    "RiskEvent",
    "RiskEventDetail",
    "RiskEventPage",
    "Text",
]


def _valid_id(value: str) -> str:
    problem = id_problem(value, max_length=len(value))
    if problem is not None:
        raise ValueError(problem)
    return value


#: An account id (or any other id): the one id rule of :mod:`fraudlens._ids`.
AccountId = Annotated[
    str,
    Field(min_length=1, max_length=MAX_ID_LENGTH, pattern=ID_PATTERN),
    AfterValidator(_valid_id),
]
#: A short label (business type, fraud type): the id rule.
Label = AccountId
#: A person's name (reviewer): the id rule, up to 128 characters.
Name = Annotated[
    str,
    # At least one character that is not blank; none forbidden by the id rule.
    Field(
        min_length=1, max_length=128, pattern=f"^[^{FORBIDDEN}]*[^\\s{FORBIDDEN}][^{FORBIDDEN}]*$"
    ),
    AfterValidator(_valid_id),
]


def _storable(value: str) -> str:
    if any("\ud800" <= ch <= "\udfff" for ch in value):
        raise ValueError("contains a lone surrogate, which cannot be stored")
    return value


def _storable_json(value: Any) -> Any:
    """``value`` if it can be written as JSON text: no lone surrogate in a key or string,
    no NaN or infinity (walked without recursion, however deep the nesting)."""
    stack = [(value, "")]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            if any("\ud800" <= ch <= "\udfff" for ch in item):
                raise ValueError(f"{where or 'value'} contains a lone surrogate, which is not text")
        elif isinstance(item, float):
            if item != item or item in (float("inf"), float("-inf")):
                raise ValueError(f"{where or 'value'} is {item}, which JSON cannot hold")
        elif isinstance(item, dict):
            for k, v in item.items():
                stack.append((k, f"{where}[{k!r}]" if isinstance(k, str) else where))
                stack.append((v, f"{where}[{k!r}]"))
        elif isinstance(item, list | tuple):
            stack.extend((v, f"{where}[{i}]") for i, v in enumerate(item))
    return value


#: Free text (an analyst's note): anything a database can store (no NUL, no lone
#: surrogate); newlines and tabs are fine.
Text = Annotated[str, Field(pattern="^[^\\x00]*$"), AfterValidator(_storable)]


def _iso_text(value: Any) -> Any:
    # Lax parsing would read "0.5" as Unix seconds; the API takes ISO-8601 text only.
    if isinstance(value, str) and not re.match(r"^\d{4}-\d{2}-\d{2}", value.strip()):
        raise ValueError("expected an ISO-8601 date or time, e.g. 2024-03-01T12:00:00Z")
    return value


#: A timestamp in ISO-8601 text (UTC when no zone is given).
IsoTime = Annotated[datetime, BeforeValidator(_iso_text)]


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:39] + "\u2026"


def _card_rows(value: Any) -> Any:
    """Numeric or object card rows refused at their first bad value, with one error.

    Validated as the union below alone, a body of bad values gets an error per value (a
    5 MB body: 930,000 errors, 15 s of CPU and half a gigabyte). This walk accepts what
    the union accepts and stops at the first thing it would not.
    """
    if not isinstance(value, list):
        return value
    first: type | None = None
    for i, row in enumerate(value, start=1):
        if not isinstance(row, list | dict):
            raise ValueError(f"row {i} is {_shown(row)}, not a list of numbers or an object")
        if first is None:
            first = type(row)
        elif type(row) is not first:
            raise ValueError(f"row {i} is not a {'list' if first is list else 'object'} like row 1")
        if not row:
            raise ValueError(f"row {i} is empty")
        items = row.items() if isinstance(row, dict) else enumerate(row, start=1)
        for name, x in items:
            what = f"feature {_shown(name)}" if isinstance(row, dict) else f"value {name}"
            if isinstance(x, str):
                # A level of a text column (a model that reads text columns takes it).
                if len(x) > MAX_CARD_TEXT:
                    raise ValueError(
                        f"row {i}, {what}: text of {len(x):,} characters "
                        f"(at most {MAX_CARD_TEXT:,})"
                    )
                continue
            if x is None or isinstance(x, bool):
                continue  # blank, or a flag: for a model that reads them (else refused there)
            if not isinstance(x, int | float):
                raise ValueError(f"row {i}, {what}: {_shown(x)} is not a number or text")
    return value


def _objects(value: Any) -> Any:
    """A list of records refused at its first item that is not an object (one error, not
    one per item)."""
    if isinstance(value, list):
        for i, item in enumerate(value, start=1):
            if not isinstance(item, dict):
                raise ValueError(f"item {i} is {_shown(item)}, not an object")
    return value


class ErrorResponse(BaseModel):
    """Every error reply: a sentence and, when useful, where the problem is."""

    error: str = Field(description="What is wrong.")
    detail: Any = Field(None, description="Row/column of bad input, validation errors, ...")


class PingResponse(BaseModel):
    """Health check reply."""

    status: Literal["healthy"]
    models: dict[str, str] = Field(description="Loaded model name -> version.")


#: One valid ULB row (Time, V1..V28, Amount), the examples' card transaction.
CARD_ROW_EXAMPLE = (
    "0,-1.36,-0.07,2.54,1.38,-0.34,0.46,0.24,0.10,0.36,0.09,-0.55,-0.62,-0.99,"
    "-0.31,1.47,-0.47,0.21,0.03,0.40,0.25,-0.02,0.28,-0.11,0.07,0.13,-0.19,"
    "0.13,-0.02,149.62"
)

#: Longest text value of a card row (a level of a text column such as a transaction type).
MAX_CARD_TEXT = 256
# A value is a number, or text, a flag (true/false) or null for a model that reads text
# columns or blanks (the scoring path refuses them for a model that reads numbers only).
_Value = bool | float | str | None
_Rows = Annotated[list[Annotated[list[_Value], Field(min_length=1)]], Field(min_length=1)]
_Records = Annotated[list[Annotated[dict[str, _Value], Field(min_length=1)]], Field(min_length=1)]

# Request bodies are strict: true is not 1, "3" is not 3.
_REQUEST = ConfigDict(protected_namespaces=(), strict=True)


class CardScoreRequest(BaseModel):
    """Card transactions to score, in the shape of the reference REST API."""

    model_config = _REQUEST

    data: Annotated[str | _Rows | _Records, BeforeValidator(_card_rows)] = Field(
        description="Headerless CSV rows (one transaction a line), a list of numeric rows "
        "(features in the model's order; for the ULB table: Time, V1..V28, Amount), or a "
        "list of rows as objects {feature: value} (every feature of the model; other keys "
        "are ignored). Values are numbers; a model trained with text columns (a "
        "transaction type, say) takes text there (at most 256 characters; true/false for "
        "a column of flags), and null where its training rows had blanks.",
        examples=[CARD_ROW_EXAMPLE],
    )
    metadata: Annotated[list[Any] | None, AfterValidator(_storable_json)] = Field(
        None,
        description="Free-form metadata: one item per row, or (for one row) a flat list. "
        "Written to the sink beside the predictions when the service has one: an object's "
        "keys become columns (at most 256 keys between them, each at most 128 characters; "
        "a key that names one of the row's own fields, such as timestamp or score, is "
        "written as metadata.<key>), anything else is written as JSON.",
    )
    model: Literal["fraud_classifier", "anomaly_detector"] | None = Field(
        None, description="Which model to run; both when null."
    )
    explain: bool = Field(
        False,
        description="Add the fraud classifier's top reasons per row: the features that "
        "raised its score most (tree SHAP for XGBoost, coefficient x value for logistic).",
    )
    top: int = Field(3, ge=1, le=20, description="Reasons per row when explain is true.")


class CardReason(BaseModel):
    """A feature that raised a card score: its value and its contribution (log-odds)."""

    feature: str
    value: float
    contribution: float


class FraudClassifierResult(BaseModel):
    """Supervised classifier output, one entry per row."""

    pred_proba: list[float]
    prediction: list[int]
    reasons: list[list[CardReason]] | None = Field(
        None, description="Per row, with explain: the top reasons, largest first."
    )


class AnomalyResult(BaseModel):
    """Anomaly detector output, one entry per row (higher = more unusual)."""

    score: list[float]


class CardScoreResponse(BaseModel):
    """Reply of ``/v1/cards/score``: the requested model(s) only."""

    fraud_classifier: FraudClassifierResult | None = None
    anomaly_detector: AnomalyResult | None = None


class MarketScoreRequest(BaseModel):
    """Trades and the 5-minute bars they were made in."""

    model_config = _REQUEST

    klines: Annotated[list[dict[str, Any]], BeforeValidator(_objects)] = Field(
        description="Bars: symbol, ts (bar start, ISO-8601), open, high, low, close, volume.",
        examples=[
            [
                {
                    "symbol": "COIN",
                    "ts": "2024-03-01T14:30:00Z",
                    "open": 10.0,
                    "high": 10.6,
                    "low": 9.8,
                    "close": 10.2,
                    "volume": 1200,
                }
            ]
        ],
    )
    trades: Annotated[list[dict[str, Any]], BeforeValidator(_objects)] = Field(
        description="Trades: trade_id, account_id, symbol, ts, side (buy|sell), price, quantity.",
        examples=[
            [
                {
                    "trade_id": "t1",
                    "account_id": "a1",
                    "symbol": "COIN",
                    "ts": "2024-03-01T14:31:00Z",
                    "side": "buy",
                    "price": 9.81,
                    "quantity": 100,
                }
            ]
        ],
    )
    model: Literal["market", "market-cnn", "market-features", "cnn", "features"] | None = Field(
        None, description="market-cnn, market-features (or cnn, features); the default if null."
    )
    top: int = Field(10, ge=0, le=1000, description="Trades to return per account (v1 API).")


class MarketAccountScore(BaseModel):
    """One account's score."""

    account_id: str
    score: float
    flagged: bool = Field(description="score > threshold (the one flag rule).")
    trades: list[dict[str, Any]] | None = Field(
        None, description="The trades that drove the score, strongest first (v1 API)."
    )
    value_moved: float | None = Field(
        None,
        description="Value the account's own matched round trips moved (equal-quantity buy "
        "and sell of a symbol in the same or adjacent bars; price gap x quantity, in the "
        "quote currency), >= 0: what alerts are ranked by.",
    )
    value_lost: float | None = Field(
        None, description="Signed value_moved: > 0 moved out of the account, < 0 into it."
    )
    n_round_trips: int | None = Field(None, description="The account's own round trips.")
    counterparty: str | None = Field(
        None,
        description="The account in the request whose trades mirror this one's most (same "
        "symbol, opposite side, equal price and quantity, within a minute), or null.",
    )
    n_mirrored: int | None = Field(
        None, description="Trades of the account mirrored by another account's."
    )
    counterparty_value_moved: float | None = Field(
        None, description="Value moved through the round trips mirrored by the counterparty."
    )


class MarketScoreResponse(BaseModel):
    """Scores in account order, with the model that produced them."""

    model_config = ConfigDict(protected_namespaces=())

    model: str = Field(description="The model that scored (name:version).")
    threshold: float = Field(
        description="The model's own threshold, from its metadata: flagged means score > threshold."
    )
    scores: list[MarketAccountScore]


# --------------------------------------------------------------------- risk events


class AccountCheckRequest(BaseModel):
    """Optional body of ``POST /v1/accounts/{account_id}/check``."""

    model_config = _REQUEST

    business_type: Label | None = Field(
        None,
        description="Line of business the check is for (kept on the risk event).",
        examples=["brokerage"],
    )


class AccountCheckQueued(BaseModel):
    """The check was put on the queue; a worker scores the account and records an event."""

    queued: Literal[True] = True
    message_id: str = Field(description="Backend id of the queue message.")
    account_id: str


class RiskEvent(BaseModel):
    """An account whose score reached the threshold, and what analysts decided about it."""

    model_config = ConfigDict(protected_namespaces=())

    id: int
    account_id: str
    fraud_type: str = Field(examples=["suspicious_transaction"])
    business_type: str | None = None
    score: float = Field(description="Model score (higher = more suspicious).")
    threshold: float = Field(
        description="The risk-event threshold the score was compared with (flagged: score > "
        "threshold); the same as event_threshold."
    )
    event_threshold: float | None = Field(
        None, description="The risk-event threshold (0.9 unless the worker was told otherwise)."
    )
    model_threshold: float | None = Field(
        None, description="The model's own operating threshold, from its metadata."
    )
    model_version: str = Field(examples=["market-features:v0001"])
    window_start: datetime | None = Field(None, description="Start of the scored window (UTC).")
    window_end: datetime | None = Field(None, description="End of the scored window (UTC).")
    details: dict[str, Any] = Field(
        default_factory=dict,
        description="``trades``: the trades that drove the score, strongest first, each with "
        "its ``reason``; the account's evidence (``value_moved``, ``counterparty``, "
        "``n_mirrored``, ...).",
    )
    value_moved: float | None = Field(
        None,
        description="Value the account's matched round trips moved, in the quote currency "
        "(>= 0), to rank alerts by.",
    )
    counterparty: str | None = Field(
        None, description="The suspected counterparty: the account whose trades mirror this one's."
    )
    priority: float = Field(
        0.0,
        description="Triage priority: score x value moved (the expected value at risk); 0 "
        "when no value was moved or none is known.",
    )
    note: str | None = Field(None, description="Analyst's note.")
    status: Literal["open", "confirmed", "dismissed"]
    created_at: datetime | None = None
    requested_at: datetime | None = Field(None, description="When the check was asked for.")
    reviewed_at: datetime | None = None
    reviewed_by: str | None = None
    assignee: str | None = Field(None, description="The user who works the event (None: nobody).")
    assigned_at: datetime | None = Field(None, description="Since when (UTC).")


class ReviewEntry(BaseModel):
    """One decision or assignment in a risk event's history (the append-only review
    audit)."""

    id: int
    actor: str = Field(description="Who decided: the signed-in user or token's user.")
    user_id: int | None = Field(
        None, description="The user's id; None when nobody was signed in (auth off)."
    )
    at: datetime = Field(description="When (UTC).")
    from_status: Literal["open", "confirmed", "dismissed"]
    to_status: Literal["open", "confirmed", "dismissed"]
    note: str | None = None
    action: Literal["review", "assign"] = Field(
        "review",
        description="review: a decision; assign: the assignee changed (from_assignee -> "
        "to_assignee), the status did not.",
    )
    from_assignee: str | None = None
    to_assignee: str | None = None


class RiskEventDetail(RiskEvent):
    """One risk event with its review history, oldest decision first."""

    history: list[ReviewEntry] = Field(default_factory=list)


class RiskEventPage(BaseModel):
    """One page of risk events in the requested order, and how many match the filters."""

    items: list[RiskEvent]
    total: int = Field(description="Events matching the filters (all pages).")
    limit: int
    offset: int


class ReviewRequest(BaseModel):
    """An analyst's decision on a risk event."""

    model_config = _REQUEST

    status: Literal["confirmed", "dismissed", "open"] = Field(
        description="confirmed (fraud), dismissed (not fraud) or open (back to the queue)."
    )
    reviewed_by: Name | None = Field(
        None,
        description="Who decided. Ignored for a signed-in user or an API token (their own "
        "name is recorded); required only when authentication is off and the caller sent "
        "neither.",
        examples=["j.doe"],
    )
    note: Text | None = Field(None, max_length=4000, description="Why; shown to other analysts.")

    @field_validator("reviewed_by")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        if not value:
            raise ValueError("reviewed_by must not be blank")
        return value


class BulkReviewRequest(ReviewRequest):
    """One decision, with one note, on several risk events at once."""

    ids: list[Annotated[int, Field(ge=1)]] = Field(
        min_length=1,
        max_length=500,
        description="The events to decide (at most 500; an id given twice is decided once). "
        "All are decided or, if one is unknown, none.",
        examples=[[12, 15, 19]],
    )


class AssignRequest(BaseModel):
    """Assign several risk events to a user, or to nobody."""

    model_config = _REQUEST

    ids: list[Annotated[int, Field(ge=1)]] = Field(
        min_length=1,
        max_length=500,
        description="The events (at most 500; an id given twice counts once). All are "
        "assigned or, if one is unknown or held by someone else without force, none.",
        examples=[[12, 15, 19]],
    )
    assignee: Name | None = Field(
        description="The user who is to work them (an analyst or admin, not disabled), or "
        "null to unassign them.",
        examples=["j.doe"],
    )
    note: Text | None = Field(
        None, max_length=4000, description="Recorded in each event's history."
    )
    force: bool = Field(
        False,
        description="Take events another user holds (else 409 naming the holders and "
        "nothing changes). Not needed for events of the caller or of the assignee.",
    )
    assigned_by: Name | None = Field(
        None,
        description="Who assigns. Ignored for a signed-in user or an API token (their own "
        "name is recorded); required only when authentication is off.",
    )


class AssignResult(BaseModel):
    """The outcome of an assignment."""

    ids: list[int] = Field(description="The events named, in the order given.")
    changed: list[int] = Field(
        description="Those whose assignee changed (each has a new history entry); the "
        "others already had this assignee."
    )
    assignee: str | None
    assigned_by: str


class BulkReviewResult(BaseModel):
    """The events a bulk decision changed."""

    status: Literal["confirmed", "dismissed", "open"]
    ids: list[int] = Field(description="The decided events, in the order given.")
    reviewed_by: str
