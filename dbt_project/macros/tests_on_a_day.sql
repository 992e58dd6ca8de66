{#- Which rows a data test reads (dbt's own get_where_subquery, overridden in this project).

    A test's `where` config may hold the placeholder __rows_of_this_build__: on an incremental
    model, the rows this build added, i.e. those loaded after the model's mark, the newest
    loaded_at it held when the last build's tests all passed (crm360/transform/day_tests.py hands
    the marks over in env CRM360_TESTED_THROUGH). On a full refresh, without a mark for the model
    and in a bare `dbt build`, it is `true`: every row is tested. The placeholder is replaced here,
    when the test is compiled, because dbt renders `where` when it parses, once for every day. -#}
{% macro get_where_subquery(relation) -%}
    {%- set where = config.get('where') -%}
    {%- if where and '__rows_of_this_build__' in where -%}
        {%- set where = where | replace('__rows_of_this_build__', rows_of_this_build(relation)) -%}
    {%- endif -%}
    {%- if where -%}
        (select * from {{ relation }} where {{ where }}) dbt_subquery
    {%- else -%}
        {{ relation }}
    {%- endif -%}
{%- endmacro %}

{#- The predicate: `true`, or the model's rows loaded after its mark (a range on its loaded_at index). -#}
{% macro rows_of_this_build(relation, column='loaded_at') -%}
    {%- set marks = fromjson(env_var('CRM360_TESTED_THROUGH', '{}') or '{}') -%}
    {%- set mark = marks.get(relation.identifier) -%}
    {%- if flags.FULL_REFRESH or mark is none -%}
        {{ return('true') }}
    {%- endif -%}
    {{ return(column ~ " > '" ~ mark ~ "'::timestamptz") }}
{%- endmacro %}
