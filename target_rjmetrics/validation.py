"""Record validation whose errors name the record, the field and the rule, never the value.

Records are checked against their stream's JSON Schema with code compiled by
``fastjsonschema`` (many times faster than the SDK's default validator); a wide schema is
compiled column by column, so that its compilation costs memory in proportion to its size.
"""

from __future__ import annotations

import json
import typing as t

import fastjsonschema
import jsonschema
from singer_sdk.exceptions import InvalidJSONSchema
from singer_sdk.sinks.core import BaseJSONSchemaValidator

from target_rjmetrics.exceptions import RJMetricsInputError

if t.TYPE_CHECKING:
    from collections.abc import Callable


class ValueFreeValidator(BaseJSONSchemaValidator):
    """JSON Schema validation whose errors name the record, field and rule, never the value.

    The schema is checked once with ``jsonschema`` (so an invalid SCHEMA is refused with a
    clear message) and compiled to Python code with ``fastjsonschema``, which validates a
    record many times faster than the SDK's default validator. Formats are not checked, as
    with the SDK's default.

    A record that breaks the schema raises ``RJMetricsInputError``, not the SDK's
    ``InvalidRecord``: SDK 0.54.9 logs every ``InvalidRecord`` with its traceback as "Record
    validation failed" (``Sink._validate_and_parse``) before re-raising it, so the user read
    the error twice. The run stops either way, as ``fail_on_record_validation_exception``
    (true) asks.
    """

    def __init__(self, schema: dict[str, t.Any], *, where: Callable[[], str]) -> None:
        """Check and compile the schema.

        Raises:
            InvalidJSONSchema: The schema itself is not valid JSON Schema.
        """
        super().__init__(schema)
        self._where = where
        validator_class = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
        try:
            validator_class.check_schema(schema)
        except jsonschema.SchemaError as exc:
            at = "/".join(str(p) for p in exc.absolute_path) or "(root)"
            msg = f"the SCHEMA is not valid JSON Schema at {at}: rule '{exc.validator}' is broken"
            raise InvalidJSONSchema(msg) from None
        try:
            self._compiled: t.Callable[[t.Any], t.Any] | None = compile_validator(schema)
        except fastjsonschema.JsonSchemaDefinitionException:
            self._compiled = None  # a schema fastjsonschema cannot compile: use jsonschema
        self._slow = validator_class(schema, format_checker=jsonschema.FormatChecker(formats=()))

    def validate(self, record: dict[str, t.Any]) -> None:
        """Raise an error naming the record, the field and the rule it breaks.

        Raises:
            RJMetricsInputError: The record does not match the schema.
        """
        if self._compiled is not None:
            try:
                self._compiled(record)
            except fastjsonschema.JsonSchemaValueException as exc:
                field = ".".join(str(p) for p in exc.path[1:]) or "(the record)"
                raise self._error(_rule_broken(field, str(exc.rule), exc.rule_definition)) from None
            return
        error = next(iter(self._slow.iter_errors(record)), None)
        if error is not None:
            field = ".".join(str(p) for p in error.absolute_path) or "(the record)"
            raise self._error(_rule_broken(field, str(error.validator), error.validator_value))

    def _error(self, broken: str) -> RJMetricsInputError:
        msg = (
            f"Cannot load {self._where()}: {broken}. Fix the tap's records or their schema, or set "
            "`validate_records` to false to load records unchecked."
        )
        return RJMetricsInputError(msg)


#: Above this many top-level properties a schema is compiled property by property (see below).
WIDE_SCHEMA_PROPERTIES = 200
#: Root keywords that a property-by-property validator checks itself (the others only annotate).
_WIDE_ROOT_RULES = frozenset({"type", "properties", "required", "additionalProperties"})
_ANNOTATIONS = frozenset({"$schema", "$id", "id", "title", "description", "$comment", "examples", "default"})


def compile_validator(schema: dict[str, t.Any]) -> t.Callable[[t.Any], t.Any]:
    """Compile a stream's schema into a function that raises ``JsonSchemaValueException``.

    ``fastjsonschema`` writes one Python function for the whole schema, whose compilation
    costs time and memory in proportion to the schema's size (a 10,000-property schema took
    ~9 s and ~380 MiB). A wide schema whose root only lists properties (no ``$ref``,
    combinators or pattern rules) is compiled property by property instead, each distinct
    property schema once, so a wide table of similar columns costs a few small compiles.
    """
    properties = schema.get("properties")
    if (
        not isinstance(properties, dict)
        or len(properties) <= WIDE_SCHEMA_PROPERTIES
        or not set(schema) <= _WIDE_ROOT_RULES | _ANNOTATIONS
        or "$ref" in json.dumps(schema)
        or not all(isinstance(p, dict) for p in properties.values())
    ):
        return t.cast("t.Callable[[t.Any], t.Any]", fastjsonschema.compile(schema, use_formats=False))
    return _WideValidator(schema)


class _WideValidator:
    """Validates a record against a wide, flat schema one field at a time (see ``compile_validator``)."""

    def __init__(self, schema: dict[str, t.Any]) -> None:
        by_text: dict[str, t.Callable[[t.Any], t.Any]] = {}

        def compiled(sub: dict[str, t.Any]) -> t.Callable[[t.Any], t.Any]:
            text = json.dumps(sub, sort_keys=True)
            if text not in by_text:
                by_text[text] = fastjsonschema.compile(sub, use_formats=False)
            return by_text[text]

        self._schema = schema
        self._fields = {name: compiled(sub) for name, sub in schema["properties"].items()}
        root_type = schema.get("type", "object")
        self._type_ok = root_type == "object" or (isinstance(root_type, list) and "object" in root_type)
        self._required = [name for name in schema.get("required", []) if isinstance(name, str)]
        extra = schema.get("additionalProperties", True)
        self._extra: t.Callable[[t.Any], t.Any] | bool = compiled(extra) if isinstance(extra, dict) else bool(extra)

    def __call__(self, record: dict[str, t.Any]) -> None:
        if not self._type_ok:
            raise fastjsonschema.JsonSchemaValueException("", None, "data", self._schema, "type")
        for name in self._required:
            if name not in record:
                raise fastjsonschema.JsonSchemaValueException("", None, "data", self._schema, "required")
        fields = self._fields
        for name, value in record.items():
            check = fields.get(name)
            if check is None:
                if self._extra is True:
                    continue
                if self._extra is False:
                    raise fastjsonschema.JsonSchemaValueException(
                        "", None, f"data.{name}", self._schema, "additionalProperties"
                    )
                check = self._extra
            try:
                check(value)
            except fastjsonschema.JsonSchemaValueException as exc:
                inner = (exc.name or "data")[len("data") :]
                raise fastjsonschema.JsonSchemaValueException(
                    "", None, f"data.{name}{inner}", exc.definition, exc.rule
                ) from None


def _rule_broken(field: str, rule: str, expected: t.Any) -> str:  # noqa: ANN401
    if rule in {"type", "format", "enum", "const", "required", "minimum", "maximum", "maxLength", "minLength"}:
        return f"field '{field}' does not satisfy {rule}={expected!r}"
    return f"field '{field}' does not satisfy the schema rule '{rule}'"
