{#-
  RAW_PAYLOAD holds the event's original JSON text as a VARIANT *string*. In Snowflake,
  casting that VARIANT to STRING gives the text back (without the JSON quotes) and
  PARSE_JSON turns it into the object: PARSE_JSON(raw_payload::STRING).

  The local Snowflake (fakesnow on DuckDB) keeps the JSON quotes on that cast, so
  PARSE_JSON would give the string again. There we read the root value as text
  (raw_payload['$']::STRING, which fakesnow turns into DuckDB's ->> '$') instead.
  TRY_PARSE_JSON rather than PARSE_JSON: one unreadable row must not break every model.
  Only the target account `fakesnow` gets that form; real accounts get the Snowflake one.
-#}
{% macro variant_string_to_object(column) -%}
  {%- if target.account | lower == 'fakesnow' -%}
    try_parse_json({{ column }}['$']::string)
  {%- else -%}
    try_parse_json({{ column }}::string)
  {%- endif -%}
{%- endmacro %}
