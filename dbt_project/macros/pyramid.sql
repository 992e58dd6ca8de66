{#- The date the run computes tiers for, as a SQL date literal. -#}
{% macro as_of_date() -%}
    {#- var('as_of_date') when given (hand-run builds, unit tests); else CRM360_AS_OF_DATE,
        which crm360 runs set: a var changing daily would make dbt re-parse the whole project.
        The env var is read only when the SQL is built for running (`execute`): read while dbt
        parses, it would be recorded as an input of every model calling this, all parsed again
        every day by partial parsing. -#}
    {%- set value = var('as_of_date', none) -%}
    {%- if (value is none or value == '') and execute -%}
        {%- set value = env_var('CRM360_AS_OF_DATE', '') -%}
    {%- endif -%}
    {%- if value is none or value == '' -%}
        current_date
    {%- else -%}
        cast('{{ value }}' as date)
    {%- endif -%}
{%- endmacro %}

{#- A SQL case expression giving the tier of a customer from its rank (1 = highest)
    among `count_column` ranked customers, with the tiers of var `tiers_var`
    ([{tier, share}, ...] from the top down, shares adding up to 1). Tier i covers
    ranks up to ceil(count * cumulative share i), so small customer bases still get
    a top tier. -#}
{% macro tier_case(rank_column, count_column, tiers_var='revenue_tiers') -%}
    {%- set tiers = var(tiers_var) -%}
    {%- set ns = namespace(cumulative=0.0) -%}
    {%- for t in tiers -%}
        {%- set ns.cumulative = ns.cumulative + (t['share'] | float) -%}
    {%- endfor -%}
    {%- if (ns.cumulative - 1.0) | abs > 0.000001 -%}
        {{ exceptions.raise_compiler_error("var " ~ tiers_var ~ ": shares add up to " ~ ns.cumulative ~ ", expected 1") }}
    {%- endif -%}
    {%- set ns.cumulative = 0.0 -%}
    case
    {%- for t in tiers %}
        {%- set ns.cumulative = ns.cumulative + (t['share'] | float) %}
        {%- if loop.last %}
        else '{{ t["tier"] }}'
        {%- else %}
        when {{ rank_column }} <= ceil({{ count_column }} * {{ ns.cumulative | round(6) }}) then '{{ t["tier"] }}'
        {%- endif %}
    {%- endfor %}
    end
{%- endmacro %}

{#- The revenue tier from a revenue rank among `buyers_column` buyers. -#}
{% macro revenue_tier_case(rank_column, buyers_column) -%}
    {{ tier_case(rank_column, buyers_column, 'revenue_tiers') }}
{%- endmacro %}

{#- Accepted values of a tier var (revenue_tiers, value_tiers), for tests. -#}
{% macro revenue_tier_names(tiers_var='revenue_tiers') -%}
    {%- set names = [] -%}
    {%- for t in var(tiers_var) -%}{%- do names.append(t['tier']) -%}{%- endfor -%}
    {{ return(names) }}
{%- endmacro %}

{#- Lower-cased, trimmed e-mail; empty becomes null. -#}
{% macro normalize_email(column) -%}
    nullif(lower(trim({{ column }})), '')
{%- endmacro %}

{#- Generic test: the column holds only tiers named in var(tiers_var) (default revenue_tiers), or 'none'. -#}
{% test accepted_revenue_tier(model, column_name, tiers_var='revenue_tiers') %}
select {{ column_name }} as unexpected_tier, count(*) as occurrences
from {{ model }}
where {{ column_name }} is null
    or {{ column_name }} not in (
        {%- for name in revenue_tier_names(tiers_var) %}'{{ name }}', {% endfor %}'none'
    )
group by {{ column_name }}
{% endtest %}
