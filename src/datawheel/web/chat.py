"""The visitor's chat with a text-generation champion, and their feedback on its answers.

The browser keeps the conversation and sends all of it each turn, as an OpenAI client does. Both routes go
through the API's own code for the same request: the answer through the chat-completions route function
(the same screen, consent rule, prompt limit, generation and durable write before the answer is sent), the
feedback through the feedback route's ``answer_feedback``. Only the identity differs: the visitor's
pseudonymous id from the signed cookie stands where the API takes ``user`` from a product's backend.
"""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, status
from pydantic import AfterValidator, Field, StrictInt

from datawheel.api.chat_schemas import ChatCompletionIn, ChatCompletionOut, ChatMessage
from datawheel.api.deps import IngestDep, RunnerDep, ScreenDep, ServerDep, TelemetryDep, WorkspaceDep
from datawheel.api.routes import feedback as feedback_route
from datawheel.api.routes.chat import create_chat_completion
from datawheel.api.schemas import Comment, FeedbackIn, Text
from datawheel.errors import Conflict
from datawheel.tasks import GENERATION_TASK
from datawheel.web.session import SameOrigin, Visitor
from datawheel.web.visitor import _Body
from datawheel.workspace import Workspace

router = APIRouter(prefix="/app/chat", include_in_schema=False, dependencies=[SameOrigin])

#: "show me two answers": two samples at this temperature differ often enough to be worth choosing between,
#: while staying close to what the greedy answer would say
TWO_ANSWERS_TEMPERATURE = 0.8


def _nonzero(value: int) -> int:
    if value == 0:
        raise ValueError("must be -1 (a bad answer) or 1 (a good one)")
    return value


class ChatIn(_Body):
    #: the whole conversation so far, ending with the visitor's new message
    messages: Annotated[list[ChatMessage], Field(min_length=1, max_length=64)]
    #: 2: two sampled answers, for the visitor to pick the better one
    n: Annotated[StrictInt, Field(ge=1, le=2)] = 1


class AnswerFeedbackIn(_Body):
    interaction_id: Text = Field(min_length=1, max_length=64)
    rating: Annotated[StrictInt, Field(ge=-1, le=1), AfterValidator(_nonzero)] | None = None
    #: the answer the visitor wanted (screened for personal data before it is stored)
    correction: Annotated[Text, Field(min_length=1, max_length=20_000)] | None = None
    #: for an exchange asked with n=2: the index of the better answer
    chosen: Annotated[StrictInt, Field(ge=0, le=1)] | None = None
    comment: Comment | None = None


def _generation(ws: Workspace) -> None:
    if ws.config.workspace.task != GENERATION_TASK:
        raise Conflict("this workspace serves a classifier: ask it through /app/predict, not the chat")


@router.post("")
def chat(body: ChatIn, uid: Visitor, ws: WorkspaceDep, server: ServerDep, ingest: IngestDep,
         telemetry: TelemetryDep) -> dict:
    """The champion's answer (or two) to the conversation; the exchange is stored before the answer is sent."""
    _generation(ws)
    two = body.n == 2
    request = ChatCompletionIn(messages=body.messages, user=uid, n=body.n,
                               temperature=TWO_ANSWERS_TEMPERATURE if two else 0.0,
                               seed=secrets.randbelow(2 ** 31) if two else None)
    out = create_chat_completion(request, "web", ws, server, ingest, telemetry)
    assert isinstance(out, ChatCompletionOut)  # not streamed: a streamed request asked for stream=true
    return {"interaction_id": out.id, "model_version": int(out.model.removeprefix("datawheel-v")),
            "answers": [c.message.content for c in out.choices],
            "finish_reasons": [c.finish_reason for c in out.choices]}


@router.post("/feedback", status_code=status.HTTP_201_CREATED)
def answer_feedback(body: AnswerFeedbackIn, uid: Visitor, ws: WorkspaceDep, runner: RunnerDep,
                    screen: ScreenDep, telemetry: TelemetryDep) -> dict:
    """A thumb, the answer the visitor wanted, or the better of two answers, on one of their exchanges."""
    _generation(ws)
    feedback = FeedbackIn(user_id=uid, **body.model_dump(exclude_none=True))
    return {"id": feedback_route.answer_feedback(feedback, ws, runner, screen, telemetry).id}
