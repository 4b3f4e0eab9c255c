"""An OpenAI chat completion request, read into what a SIFT run needs.

- The last message is the question and must be the user's. Earlier messages (system,
  developer, user, assistant) are context: they go before the question, role by role,
  so every SIFT step sees them (a fact stated two turns ago is a fact of the problem).
- `max_tokens` (or `max_completion_tokens`), `temperature` and `top_p` override the
  server's decoding for this request; `max_tokens` limits each SIFT call.
- What SIFT cannot do is refused with a 400 rather than ignored: tools and tool
  messages, more than one choice (`n`), non-text content, a `response_format`.
  A field named as a deployment setting (`base_url`, `api_key`, `cache`, `dtype`,
  `request_timeout`: the server's own) is refused with a 400 too, and `max_tokens` over
  the server's limit. Any other field is accepted and has no effect.
- The question, earlier turns included, is at most `state.MAX_QUESTION_CHARS` characters
  of valid Unicode (a lone surrogate such as `"\\ud800"` is refused).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sift_graph.context import SiftContext, run_settings, setting_specs
from sift_graph.deployment import Deployment
from sift_graph.serve.errors import ApiError, bad_request
from sift_graph.serve.settings import MODEL_ID
from sift_graph.state import validate_question

_ROLE_LABELS = {"system": "System", "developer": "System", "user": "User", "assistant": "Assistant"}
CONTEXT_HEADER = "Context from earlier in the conversation:"
# Request parameter -> the SiftContext field it overrides (the newer name wins).
DECODING_PARAMS = {
    "max_completion_tokens": "max_tokens",
    "max_tokens": "max_tokens",
    "temperature": "temperature",
    "top_p": "top_p",
}


@dataclass(frozen=True)
class ChatRequest:
    question: str
    stream: bool = False
    include_usage: bool = False
    """`stream_options.include_usage`: end the stream with a usage chunk."""
    decoding: Mapping[str, Any] = field(default_factory=dict)
    """Request parameter -> value, for the given ones of DECODING_PARAMS."""


def _text_of(content: Any, where: str) -> str:
    # Not langchain-core's `message.text`: this reads a client's raw JSON at the HTTP
    # boundary, where a part SIFT cannot read (an image) or a malformed one is a 400 naming
    # the message, not silently dropped as `.text` drops it; and a client's text parts are
    # separate lines of its message, so they are joined by a newline, not run together.
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(part, Mapping) for part in content):
        if any(part.get("type") != "text" or not isinstance(part.get("text"), str) for part in content):
            raise bad_request(f"{where}.content: SIFT reads text only (parts of type 'text')", "messages")
        return "\n".join(part["text"] for part in content)
    raise bad_request(f"{where}.content: expected a string or a list of text parts", "messages")


def _turn(index: int, message: Any) -> tuple[str, str]:
    where = f"messages[{index}]"
    if not isinstance(message, Mapping):
        raise bad_request(f"{where}: expected an object with 'role' and 'content'", "messages")
    role = message.get("role")
    if role in ("tool", "function") or message.get("tool_calls") or message.get("function_call"):
        raise bad_request(
            f"{where}: SIFT calls no tools, so tool calls and tool messages are not supported", "messages"
        )
    if role not in _ROLE_LABELS:
        raise bad_request(f"{where}.role: expected one of {', '.join(_ROLE_LABELS)}, got {role!r}", "messages")
    return role, _text_of(message.get("content"), where).strip()


def question_from_messages(messages: Any) -> str:
    """The question SIFT answers: the last (user) message, after the earlier ones as context."""
    if not isinstance(messages, list) or not messages:
        raise bad_request("messages: expected a non-empty list of messages", "messages")
    turns = [_turn(index, message) for index, message in enumerate(messages)]
    role, question = turns[-1]
    if role != "user":
        raise bad_request("messages: the last message must be the user's question", "messages")
    if not question:
        raise bad_request("messages: the user's question is empty", "messages")
    earlier = [f"{_ROLE_LABELS[role]}: {text}" for role, text in turns[:-1] if text]
    if earlier:
        question = CONTEXT_HEADER + "\n" + "\n".join(earlier) + "\n\n" + question
    try:
        return validate_question(question)  # not too long, no lone surrogate
    except ValueError as exc:
        raise bad_request(f"messages: {str(exc).partition(': ')[2]}", "messages") from None


def _flag(body: Mapping[str, Any], name: str) -> bool:
    value = body.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise bad_request(f"{name}: expected true or false, got {value!r}", name)
    return value


def _refuse_unsupported(body: Mapping[str, Any]) -> None:
    if body.get("n") not in (None, 1):
        raise bad_request(f"n: SIFT gives one answer per request, got n={body['n']!r}", "n")
    for spec in setting_specs():
        # `model` is OpenAI's own parameter (the served model's id), checked on its own.
        if spec.deployment and spec.name != "model" and spec.name in body:
            raise bad_request(
                f"{spec.name}: a deployment setting, chosen by the server and never by a request", spec.name
            )
    for name in ("tools", "functions"):
        if body.get(name):
            raise bad_request(f"{name}: SIFT calls no tools", name)
    response_format = body.get("response_format")
    if response_format is not None and (
        not isinstance(response_format, Mapping) or response_format.get("type") != "text"
    ):
        raise bad_request("response_format: SIFT answers in text only", "response_format")


def parse_chat_request(body: Any) -> ChatRequest:
    """A chat completion request body (parsed JSON) -> ChatRequest; ApiError (400, or
    404 for another model) naming the parameter at fault."""
    if not isinstance(body, Mapping):
        raise bad_request("the request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise bad_request(f"model: expected a model id ({MODEL_ID!r})", "model")
    if model != MODEL_ID:
        raise ApiError(
            404,
            f"The model {model!r} does not exist here; this server serves {MODEL_ID!r}",
            param="model",
            code="model_not_found",
        )
    _refuse_unsupported(body)
    question = question_from_messages(body.get("messages"))
    options = body.get("stream_options")
    if options is not None and not isinstance(options, Mapping):
        raise bad_request("stream_options: expected an object", "stream_options")
    decoding = {name: body[name] for name in DECODING_PARAMS if body.get(name) is not None}
    if "max_completion_tokens" in decoding:
        decoding.pop("max_tokens", None)
    return ChatRequest(
        question=question,
        stream=_flag(body, "stream"),
        include_usage=_flag(options or {}, "include_usage"),
        decoding=decoding,
    )


def context_for(deployment: Deployment | SiftContext, decoding: Mapping[str, Any]) -> SiftContext:
    """The deployment's settings with a request's decoding; a bad value or one over the
    deployment's limit is a 400 naming the request's parameter. (A bare SiftContext is
    a deployment with the default limits.)"""
    if isinstance(deployment, SiftContext):
        deployment = Deployment(context=deployment)
    context = deployment.context
    for param, value in decoding.items():
        try:
            context = deployment.served_context({**run_settings(context), DECODING_PARAMS[param]: value})
        except ValueError as exc:
            reason = str(exc).partition(": ")[2] or str(exc)
            raise bad_request(f"{param}: {reason}", param) from None
    return context
