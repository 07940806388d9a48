"""Orders saved before the queued status whose workflow never started become queued, so
the starter starts them (they used to stay "pending", with a "Not started" reason)."""

from django.db import migrations


def queue_unstarted(apps, schema_editor):
    Order = apps.get_model("orders", "Order")
    Order.objects.filter(engine="temporal", workflow_id="", status="pending").update(
        status="queued"
    )


class Migration(migrations.Migration):

    dependencies = [
        ('orders', '0005_operators_group'),
    ]

    operations = [migrations.RunPython(queue_unstarted, migrations.RunPython.noop)]
