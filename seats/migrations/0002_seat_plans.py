from django.db import migrations

# The starting plans (DESIGN: Teams $18 and Enterprise $72 per seat per month). Staff edit them in
# the admin afterwards; this runs once.
PLANS = [
    {
        "code": "teams",
        "name": "Teams",
        "description": "For teams: per-seat billing, shared credits, usage by member.",
        "unit_amount": 1800,
        "position": 1,
    },
    {
        "code": "enterprise",
        "name": "Enterprise",
        "description": "For larger organizations, with priority support.",
        "unit_amount": 7200,
        "position": 2,
    },
]


def seed_plans(apps, schema_editor):
    SeatPlan = apps.get_model("seats", "SeatPlan")
    for plan in PLANS:
        SeatPlan.objects.get_or_create(code=plan["code"], defaults=plan)


class Migration(migrations.Migration):
    dependencies = [("seats", "0001_initial")]

    operations = [migrations.RunPython(seed_plans, migrations.RunPython.noop)]
