{#- The date the run computes tiers for, as a SQL date literal. -#}
{% macro as_of_date() -%}
    {%- set value = var('as_of_date', none) -%}
    {%- if value is none or value == '' -%}
        current_date
    {%- else -%}
        cast('{{ value }}' as date)
    {%- endif -%}
{%- endmacro %}

{#- A SQL case expression giving the revenue tier of a customer from its rank
    (1 = highest revenue) among `buyers` customers. Tier i covers ranks up to
    ceil(buyers * cumulative share i), so small customer bases still get a top tier. -#}
{% macro revenue_tier_case(rank_column, buyers_column) -%}
    {%- set tiers = var('revenue_tiers') -%}
    {%- set ns = namespace(cumulative=0.0) -%}
    {%- for t in tiers -%}
        {%- set ns.cumulative = ns.cumulative + (t['share'] | float) -%}
    {%- endfor -%}
    {%- if (ns.cumulative - 1.0) | abs > 0.000001 -%}
        {{ exceptions.raise_compiler_error("var revenue_tiers: shares add up to " ~ ns.cumulative ~ ", expected 1") }}
    {%- endif -%}
    {%- set ns.cumulative = 0.0 -%}
    case
    {%- for t in tiers %}
        {%- set ns.cumulative = ns.cumulative + (t['share'] | float) %}
        {%- if loop.last %}
        else '{{ t["tier"] }}'
        {%- else %}
        when {{ rank_column }} <= ceil({{ buyers_column }} * {{ ns.cumulative | round(6) }}) then '{{ t["tier"] }}'
        {%- endif %}
    {%- endfor %}
    end
{%- endmacro %}

{#- Accepted values of the revenue tier, for tests. -#}
{% macro revenue_tier_names() -%}
    {%- set names = [] -%}
    {%- for t in var('revenue_tiers') -%}{%- do names.append(t['tier']) -%}{%- endfor -%}
    {{ return(names) }}
{%- endmacro %}

{#- Lower-cased, trimmed e-mail; empty becomes null. -#}
{% macro normalize_email(column) -%}
    nullif(lower(trim({{ column }})), '')
{%- endmacro %}

{#- Generic test: the column holds only revenue tiers named in var('revenue_tiers'), or 'none'. -#}
{% test accepted_revenue_tier(model, column_name) %}
select {{ column_name }} as unexpected_tier, count(*) as occurrences
from {{ model }}
where {{ column_name }} is null
    or {{ column_name }} not in (
        {%- for name in revenue_tier_names() %}'{{ name }}', {% endfor %}'none'
    )
group by {{ column_name }}
{% endtest %}
