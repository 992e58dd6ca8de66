{#- One row per currency and period of a rate, from the deployment's rates file: the rate turns
    one unit of currency_code into var('reporting_currency') on the days valid_from to valid_until
    (both included). A rate without valid_to holds until the day before the currency's next one;
    the last holds on. The load checked the file and computed valid_until (crm360.ingest.currency):
    no overlaps. -#}
with source as (
    select * from {{ source('currency', 'currency_rates') }}
),

final as (
    select
        currency as currency_code,
        valid_from,
        valid_until,
        rate
    from source
)

select * from final
