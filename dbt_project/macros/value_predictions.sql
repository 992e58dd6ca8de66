{#- on-run-start hook: create the table crm360's customer value step writes
    (crm360/value.py, PREDICTIONS_DDL: keep the two identical), so that
    int_customer_value finds its source on any database, even when no fit has run:
    its predictions are then null. Creates nothing that exists already. -#}
{% macro create_value_predictions_table() -%}
create schema if not exists predictions;
create table if not exists predictions.customer_value (
    customer_key text not null,
    predicted_purchases double precision,
    probability_alive double precision,
    expected_order_value_eur double precision,
    predicted_clv_eur double precision,
    as_of_date date not null,
    primary key (customer_key)
)
{%- endmacro %}
