{#- One row per customer_key in int_customer_purchase_summary (every customer with a
    purchase), with the customer value predictions crm360 wrote for this as-of date:
    predicted purchases over var('clv_horizon_days'), probability of being alive,
    expected order value and predicted lifetime value (BG/NBD + Gamma-Gamma).

    The predictions are null (value_model_fitted false) when the models could not be
    fitted, or when the predictions table holds another as-of date's fit (a bare
    `dbt build` does not fit). -#}
with summary as (
    select * from {{ ref('int_customer_purchase_summary') }}
),

predictions as (
    select * from {{ source('predictions', 'customer_value') }}
),

current_predictions as (
    select
        customer_key,
        predicted_purchases,
        probability_alive,
        expected_order_value,
        predicted_clv
    from predictions
    where as_of_date = {{ as_of_date() }}
),

final as (
    select
        summary.customer_key,
        summary.frequency,
        summary.recency_days,
        summary.tenure_days,
        summary.avg_repeat_value,
        summary.first_purchase_date,
        summary.last_purchase_date,
        current_predictions.predicted_purchases,
        current_predictions.probability_alive,
        current_predictions.expected_order_value,
        current_predictions.predicted_clv,
        current_predictions.customer_key is not null as value_model_fitted,
        summary.as_of_date
    from summary
    left join current_predictions on summary.customer_key = current_predictions.customer_key
)

select * from final
