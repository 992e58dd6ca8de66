{#- Use the folder's schema as given (staging, intermediate, marts) instead of
    dbt's default "<target schema>_<custom schema>".

    Marts are built where readers cannot see them: crm360 sets
    CRM360_MARTS_BUILD_SCHEMA (e.g. marts__build) for the build, gates that schema,
    then publishes it as `marts` in one transaction. A bare `dbt build` writes
    `marts` directly. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- elif custom_schema_name | trim == 'marts' -%}
        {{ env_var('CRM360_MARTS_BUILD_SCHEMA', 'marts') }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
