"""The rules Discord checks on what a bot sends, with the JSON errors Discord answers.

Each check returns Discord's nested ``errors`` object (empty when the payload passes), so the
server can answer ``400 {"code": 50035, "message": "Invalid Form Body", "errors": ...}`` the way
Discord does. Limits are Discord's documented ones (Application Commands, Message, Embed Limits).
"""

from __future__ import annotations

import unicodedata
from typing import Any

MAX_CONTENT = 2000
MAX_EMBEDS = 10
MAX_EMBED_TOTAL = 6000
EMBED_LIMITS = {"title": 256, "description": 4096}
MAX_FIELDS = 25
FIELD_LIMITS = {"name": 256, "value": 1024}
MAX_ROWS = 5
MAX_ROW_ITEMS = 5
MAX_CUSTOM_ID = 100
MAX_LABEL = 80

MAX_COMMAND_NAME = 32
MAX_DESCRIPTION = 100
MAX_OPTIONS = 25
MAX_CHOICES = 25
MAX_CHOICE_NAME = 100
MAX_COMMANDS_PER_TYPE = 100

CHAT_INPUT, USER, MESSAGE = 1, 2, 3
SUB_COMMAND, SUB_COMMAND_GROUP = 1, 2
OPTION_TYPES = range(1, 12)


def error(code: str, message: str) -> dict[str, Any]:
    return {"_errors": [{"code": code, "message": message}]}


def too_long(limit: int) -> dict[str, Any]:
    return error("BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length.")


def length_between(low: int, high: int) -> dict[str, Any]:
    return error("BASE_TYPE_BAD_LENGTH", f"Must be between {low} and {high} in length.")


def valid_command_name(name: Any) -> bool:
    """Discord's ``^[-_\\p{L}\\p{N}\\p{sc=Deva}\\p{sc=Thai}]{1,32}$``, lower case where a case exists."""
    if not isinstance(name, str) or not 1 <= len(name) <= MAX_COMMAND_NAME:
        return False
    if name != name.lower():
        return False
    for ch in name:
        if ch in "-_":
            continue
        category = unicodedata.category(ch)
        if category[0] in "LN":
            continue
        # Devanagari and Thai combining marks are allowed by the script classes.
        if category[0] == "M" and unicodedata.name(ch, "").startswith(("DEVANAGARI", "THAI")):
            continue
        return False
    return True


def _check_text(value: Any, low: int, high: int) -> dict[str, Any] | None:
    if not isinstance(value, str):
        return error("BASE_TYPE_REQUIRED", "This field is required")
    if not low <= len(value) <= high:
        return length_between(low, high)
    return None


def _check_localized(item: dict[str, Any], key: str, check) -> dict[str, Any]:
    errors: dict[str, Any] = {}
    for locale, value in (item.get(key) or {}).items():
        problem = check(value)
        if problem:
            errors[locale] = problem
    return {key: errors} if errors else {}


def _name_error(name: Any) -> dict[str, Any] | None:
    if valid_command_name(name):
        return None
    return error("APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid")


def check_option(option: Any, depth: int = 0) -> dict[str, Any]:
    if not isinstance(option, dict):
        return error("DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType")
    errors: dict[str, Any] = {}
    kind = option.get("type")
    if kind not in OPTION_TYPES:
        errors["type"] = error("ENUM_TYPE_COERCE", f"Value \"{kind}\" is not a valid enum value.")
    if (problem := _name_error(option.get("name"))) is not None:
        errors["name"] = problem
    if (problem := _check_text(option.get("description"), 1, MAX_DESCRIPTION)) is not None:
        errors["description"] = problem
    errors.update(_check_localized(option, "name_localizations", _name_error))
    choices = option.get("choices") or []
    if len(choices) > MAX_CHOICES:
        errors["choices"] = error("BASE_TYPE_MAX_LENGTH", f"Must be {MAX_CHOICES} or fewer in length.")
    else:
        choice_errors = {}
        for index, choice in enumerate(choices):
            problem = {}
            if (p := _check_text(choice.get("name"), 1, MAX_CHOICE_NAME)) is not None:
                problem["name"] = p
            value = choice.get("value")
            if isinstance(value, str) and not 1 <= len(value) <= MAX_CHOICE_NAME:
                problem["value"] = length_between(1, MAX_CHOICE_NAME)
            if problem:
                choice_errors[str(index)] = problem
        if choice_errors:
            errors["choices"] = choice_errors
    nested = option.get("options") or []
    if nested and kind not in (SUB_COMMAND, SUB_COMMAND_GROUP):
        errors["options"] = error("APPLICATION_COMMAND_OPTIONS_INVALID", "Only sub-commands and groups have options")
    elif nested:
        errors.update(check_options(nested, depth + 1))
    return errors


def check_options(options: Any, depth: int = 0) -> dict[str, Any]:
    if not isinstance(options, list):
        return {"options": error("LIST_TYPE_CONVERT", "Only iterables may be used in a ListType")}
    if len(options) > MAX_OPTIONS:
        return {"options": too_long(MAX_OPTIONS)}
    errors: dict[str, Any] = {}
    seen_optional = False
    names: set[str] = set()
    for index, option in enumerate(options):
        problem = check_option(option, depth)
        if isinstance(option, dict):
            if option.get("required"):
                if seen_optional:
                    problem.setdefault("required", error(
                        "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
                        "Required options must be placed before non-required options",
                    ))
            elif option.get("type") not in (SUB_COMMAND, SUB_COMMAND_GROUP):
                seen_optional = True
            if option.get("name") in names:
                problem.setdefault("name", error(
                    "APPLICATION_COMMAND_OPTIONS_DUPLICATE_NAME", "Option names must be unique"
                ))
            names.add(option.get("name"))
        if problem:
            errors[str(index)] = problem
    return {"options": errors} if errors else {}


def check_command(command: Any) -> dict[str, Any]:
    if not isinstance(command, dict):
        return error("DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType")
    errors: dict[str, Any] = {}
    kind = command.get("type", CHAT_INPUT)
    name = command.get("name")
    if kind == CHAT_INPUT:
        if (problem := _name_error(name)) is not None:
            errors["name"] = problem
        if (problem := _check_text(command.get("description"), 1, MAX_DESCRIPTION)) is not None:
            errors["description"] = problem
        errors.update(_check_localized(command, "name_localizations", _name_error))
        errors.update(_check_localized(
            command, "description_localizations", lambda v: _check_text(v, 1, MAX_DESCRIPTION)
        ))
        errors.update(check_options(command.get("options") or []))
    elif kind in (USER, MESSAGE):
        if (problem := _check_text(name, 1, MAX_COMMAND_NAME)) is not None:
            errors["name"] = problem
        if command.get("description"):
            errors["description"] = error(
                "APPLICATION_COMMAND_DESCRIPTION_INVALID", "Context menu commands cannot have a description"
            )
        if command.get("options"):
            errors["options"] = error("APPLICATION_COMMAND_OPTIONS_INVALID", "Context menu commands cannot have options")
    else:
        errors["type"] = error("ENUM_TYPE_COERCE", f"Value \"{kind}\" is not a valid enum value.")
    return errors


def check_commands(commands: Any) -> dict[str, Any]:
    """The errors of a bulk overwrite (PUT .../commands), keyed by list index like Discord's."""
    if not isinstance(commands, list):
        return error("LIST_TYPE_CONVERT", "Only iterables may be used in a ListType")
    errors: dict[str, Any] = {}
    seen: set[tuple[int, str]] = set()
    per_type: dict[int, int] = {}
    for index, command in enumerate(commands):
        problem = check_command(command)
        if isinstance(command, dict):
            key = (command.get("type", CHAT_INPUT), command.get("name"))
            if key in seen:
                problem.setdefault("name", error(
                    "APPLICATION_COMMANDS_DUPLICATE_NAME", f"Application command names must be unique"
                ))
            seen.add(key)
            per_type[key[0]] = per_type.get(key[0], 0) + 1
        if problem:
            errors[str(index)] = problem
    if any(count > MAX_COMMANDS_PER_TYPE for count in per_type.values()):
        errors.setdefault("_errors", []).append({
            "code": "APPLICATION_COMMAND_TOO_MANY", "message": "Maximum number of application commands reached (100)"
        })
    return errors


def embed_size(embed: dict[str, Any]) -> int:
    """The characters Discord counts towards the 6,000 limit of all embeds in a message."""
    total = len(embed.get("title") or "") + len(embed.get("description") or "")
    total += len((embed.get("footer") or {}).get("text") or "")
    total += len((embed.get("author") or {}).get("name") or "")
    for field in embed.get("fields") or []:
        total += len(field.get("name") or "") + len(field.get("value") or "")
    return total


def check_embed(embed: Any) -> dict[str, Any]:
    if not isinstance(embed, dict):
        return error("DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType")
    errors: dict[str, Any] = {}
    for key, limit in EMBED_LIMITS.items():
        value = embed.get(key)
        if isinstance(value, str) and len(value) > limit:
            errors[key] = too_long(limit)
    footer = (embed.get("footer") or {}).get("text")
    if isinstance(footer, str) and len(footer) > 2048:
        errors["footer"] = {"text": too_long(2048)}
    author = (embed.get("author") or {}).get("name")
    if isinstance(author, str) and len(author) > 256:
        errors["author"] = {"name": too_long(256)}
    fields = embed.get("fields") or []
    if len(fields) > MAX_FIELDS:
        errors["fields"] = too_long(MAX_FIELDS)
    else:
        field_errors = {}
        for index, field in enumerate(fields):
            problem = {}
            for key, limit in FIELD_LIMITS.items():
                value = field.get(key)
                if not isinstance(value, str) or not value:
                    problem[key] = error("BASE_TYPE_REQUIRED", "This field is required")
                elif len(value) > limit:
                    problem[key] = too_long(limit)
            if problem:
                field_errors[str(index)] = problem
        if field_errors:
            errors["fields"] = field_errors
    return errors


def check_components(rows: Any) -> dict[str, Any]:
    if not isinstance(rows, list):
        return error("LIST_TYPE_CONVERT", "Only iterables may be used in a ListType")
    if len(rows) > MAX_ROWS:
        return too_long(MAX_ROWS)
    errors: dict[str, Any] = {}
    for r, row in enumerate(rows):
        if not isinstance(row, dict) or row.get("type") != 1:
            continue  # components v2 layouts are not checked here
        items = row.get("components") or []
        if len(items) > MAX_ROW_ITEMS:
            errors[str(r)] = {"components": too_long(MAX_ROW_ITEMS)}
            continue
        item_errors = {}
        for i, item in enumerate(items):
            problem = {}
            custom_id = item.get("custom_id")
            if isinstance(custom_id, str) and len(custom_id) > MAX_CUSTOM_ID:
                problem["custom_id"] = too_long(MAX_CUSTOM_ID)
            label = item.get("label")
            if isinstance(label, str) and len(label) > MAX_LABEL:
                problem["label"] = too_long(MAX_LABEL)
            if problem:
                item_errors[str(i)] = problem
        if item_errors:
            errors[str(r)] = {"components": item_errors}
    return errors


def check_message(data: dict[str, Any], *, require_body: bool = True) -> dict[str, Any]:
    """Errors of a message body (content, embeds, components), as Discord nests them."""
    errors: dict[str, Any] = {}
    content = data.get("content")
    if isinstance(content, str) and len(content) > MAX_CONTENT:
        errors["content"] = too_long(MAX_CONTENT)
    embeds = data.get("embeds")
    if embeds:
        if len(embeds) > MAX_EMBEDS:
            errors["embeds"] = too_long(MAX_EMBEDS)
        else:
            embed_errors = {str(i): e for i, embed in enumerate(embeds) if (e := check_embed(embed))}
            if embed_errors:
                errors["embeds"] = embed_errors
            elif sum(embed_size(e) for e in embeds) > MAX_EMBED_TOTAL:
                errors["embeds"] = error(
                    "MAX_EMBED_SIZE_EXCEEDED", f"Embed size exceeds maximum size of {MAX_EMBED_TOTAL}"
                )
    components = data.get("components")
    if components:
        if problem := check_components(components):
            errors["components"] = problem
    return errors


def check_allowed_mentions(allowed: Any) -> dict[str, Any]:
    """Discord refuses ``parse: ["users"]`` together with a ``users`` list (likewise roles)."""
    if not isinstance(allowed, dict):
        return {}
    errors = {}
    parse = allowed.get("parse") or []
    for kind in ("users", "roles"):
        if kind in parse and allowed.get(kind):
            errors[kind] = error("MESSAGE_ALLOWED_MENTIONS_PARSE_EXCLUSIVE",
                                 f"parse:[\"{kind}\"] and {kind}: [ids] are mutually exclusive.")
        if len(allowed.get(kind) or []) > 100:
            errors[kind] = too_long(100)
    return {"allowed_mentions": errors} if errors else {}


def is_empty_message(data: dict[str, Any]) -> bool:
    return not (
        data.get("content") or data.get("embeds") or data.get("components")
        or data.get("attachments") or data.get("sticker_ids") or data.get("poll")
    )
