{#- Fails with the groups of `columns` that have more than one row (filter with config: where). -#}
{% test one_row_per(model, columns) %}

select
    {{ columns | join(', ') }},
    count(*) as rows_in_group
from {{ model }}
group by {{ columns | join(', ') }}
having count(*) > 1

{% endtest %}
