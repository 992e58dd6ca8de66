{#- One row: the currency every amount in the marts is in (the columns tagged meta unit: money),
    as configured in sources.yml (`currency: reporting:`) and passed to dbt as var('reporting_currency'). -#}
select
    cast('{{ var("reporting_currency") }}' as char(3)) as currency_code,
    cast({{ as_of_date() }} as date) as as_of_date
