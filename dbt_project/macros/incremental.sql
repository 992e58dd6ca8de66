{#- Helpers for incremental models: a daily build reads only what was loaded since
    the model's last build, so its cost follows the day's data, not the history.

    Loads and dbt builds run one after the other (the transform DAG waits for the
    ingest assets), so "loaded after the newest row already built" is exact. -#}

{#- A predicate on a source's load timestamp: true on a full build, else only rows
    loaded after the newest `loaded_at` in this model. -#}
{% macro loaded_since_last_build(loaded_at_column, this_column='loaded_at') -%}
    {%- if is_incremental() -%}
        {#- the watermark is read first and written into the query as a literal: with a
            subquery the planner cannot know the range is small and scans the history -#}
        {%- if '__dbt__cte__' in (this | string) -%}
            {#- a dbt unit test: `this` is a fixture CTE, not a table to query now -#}
            {{ loaded_at_column }} > (select coalesce(max(built.{{ this_column }}), '-infinity'::timestamptz) from {{ this }} as built)
        {%- else -%}
            {%- set watermark = none -%}
            {%- if execute -%}
                {%- set found = run_query("select max(" ~ this_column ~ ")::text from " ~ this) -%}
                {%- set watermark = found.columns[0].values()[0] -%}
            {%- endif -%}
            {{ loaded_at_column }} > '{{ watermark if watermark is not none else "-infinity" }}'::timestamptz
        {%- endif -%}
    {%- else -%}
        true
    {%- endif -%}
{%- endmacro %}

{#- A post-hook creating an index on this model if it does not exist yet. An
    incremental model's loaded_at needs a btree: max(loaded_at), its watermark, is
    an index lookup there and a full scan with BRIN.

    Names longer than PostgreSQL's 63 characters end in a hash of the full name
    instead of being cut (two cut names could collide). A table rebuilt in place
    (a bare `dbt build` run twice) still has its predecessor, renamed to a backup
    that dbt drops after this hook, holding the index name in the schema: that
    index is dropped first, else the new table would silently get none. -#}
{% macro ensure_index(columns, using='btree') -%}
    {%- set name = this.identifier ~ '__' ~ (columns | join('_')) ~ '__' ~ using ~ '_idx' -%}
    {%- if name | length > 63 -%}
        {%- set name = name[:54] ~ '_' ~ local_md5(name)[:8] -%}
    {%- endif -%}
    {%- if config.get('materialized') == 'table' -%}
    do $ensure_index$ begin
        if exists (select from pg_indexes where schemaname = '{{ this.schema }}' and indexname = '{{ name }}'
                   and tablename <> '{{ this.identifier }}') then
            drop index "{{ this.schema }}"."{{ name }}";
        end if;
    end $ensure_index$;
    {% endif -%}
    create index if not exists "{{ name }}" on {{ this }} using {{ using }} ({{ columns | join(', ') }})
{%- endmacro %}

{#- A post-hook: ANALYZE the model's table (views have no statistics of their own). -#}
{% macro analyze_table() -%}
    {%- if config.get('materialized') in ('table', 'incremental') -%}
        analyze {{ this }}
    {%- else -%}
        select 1
    {%- endif -%}
{%- endmacro %}
