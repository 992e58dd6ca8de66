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
    {#- not read while dbt parses: the marks change every day, and partial parsing would parse
        every test reading them again -#}
    {%- if not execute -%}
        {{ return('true') }}
    {%- endif -%}
    {%- set marks = fromjson(env_var('CRM360_TESTED_THROUGH', '{}') or '{}') -%}
    {%- set mark = marks.get(relation.identifier) -%}
    {%- if flags.FULL_REFRESH or mark is none -%}
        {{ return('true') }}
    {%- endif -%}
    {{ return(column ~ " > '" ~ mark ~ "'::timestamptz") }}
{%- endmacro %}

{#- dbt's `unique` test (its postgres__ implementation, which dispatch takes from the project
    before dbt's own), bounded on a day by the rows the build wrote.

    A duplicate needs two rows with the same value. The rows a table held at the model's mark
    passed the test then, and a build never changes a kept row in place: it deletes rows and
    writes new ones. So a duplicate now involves a row written since the mark, and checking the
    values of those rows against the whole table (through the column's index) finds every one
    (nulls are no duplicates, as in dbt's test).
    The rows written since the mark are those loaded after it; for a model with a unique_key,
    every row of a key one of those rows has, since the model rewrites a key's rows together (the
    sessions keep an old session's loaded_at when they rewrite a visitor). Without a mark (a full
    build, a first build, a changed project, a replaced file, a bare `dbt build`), and under a
    `where` config, every row is read, as dbt's own test does. -#}
{% macro postgres__test_unique(model, column_name) -%}
select
    {{ column_name }} as unique_field,
    count(*) as n_records
from {{ model }}
where {{ column_name }} is not null {{ written_since_mark(model, column_name) }}
group by {{ column_name }}
having count(*) > 1
{%- endmacro %}

{#- `and <column> in (<its values on the rows written since the mark>)`, or nothing when every row
    is to be read. `model` is what a generic test is handed: the relation as text
    ("db"."schema"."name"), or a subquery under a `where` config. -#}
{% macro written_since_mark(model, column) -%}
    {%- set parts = (model | string).replace('"', '').split('.') -%}
    {%- if (model | string).startswith('(') or parts | length != 3 -%}
        {{ return('') }}
    {%- endif -%}
    {%- set relation = api.Relation.create(database=parts[0], schema=parts[1], identifier=parts[2]) -%}
    {%- set since = rows_of_this_build(relation) -%}
    {%- if since == 'true' -%}
        {{ return('') }}
    {%- endif -%}
    {%- set key = rewritten_together(relation) -%}
    {%- if key and key != [column] -%}
        {%- set written -%}
            ({{ key | join(', ') }}) in (select {{ key | join(', ') }} from {{ relation }} where {{ since }})
        {%- endset -%}
    {%- else -%}
        {%- set written = since -%}
    {%- endif -%}
    {{ return('and ' ~ column ~ ' in (select ' ~ column ~ ' from ' ~ relation ~ ' where ' ~ written ~ ')') }}
{%- endmacro %}

{#- The columns of the unique_key of the model behind a relation (a list; empty without one): the
    rows an incremental build deletes and writes again together. Read from the manifest, where the
    model's config declares it. -#}
{% macro rewritten_together(relation) -%}
    {%- for node in graph.nodes.values()
          if node.resource_type == 'model' and node.alias == relation.identifier
             and node.schema == relation.schema -%}
        {%- set key = node.config.unique_key -%}
        {{ return([] if key is none else ([key] if key is string else key)) }}
    {%- endfor -%}
    {{ return([]) }}
{%- endmacro %}
