{#- Generic test: every non-null value of the column lies between min_value and
    max_value (either may be omitted); with inclusive=false the bounds themselves
    fail, and so do NaN and infinite values of a numeric column. Nulls pass: pair
    with not_null where a value is required. Returns one row
    per offending value with how often it occurs. -#}
{% test between(model, column_name, min_value=none, max_value=none, inclusive=true) %}
{%- if min_value is none and max_value is none -%}
    {{ exceptions.raise_compiler_error("test between on " ~ column_name ~ ": give min_value, max_value or both") }}
{%- endif -%}
{%- set below = '<' if inclusive else '<=' -%}
{%- set above = '>' if inclusive else '>=' -%}
select {{ column_name }} as value_out_of_range, count(*) as occurrences
from {{ model }}
where {{ column_name }} is not null
    and (
        false
        {%- if min_value is not none %}
        or {{ column_name }} {{ below }} {{ min_value }}
        {%- endif %}
        {%- if max_value is not none %}
        or {{ column_name }} {{ above }} {{ max_value }}
        {%- endif %}
        or cast({{ column_name }} as double precision) in ('NaN', 'Infinity', '-Infinity')
    )
group by {{ column_name }}
{% endtest %}
