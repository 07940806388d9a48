"""The simulated services' models now belong to the simulator app (state only)."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('orders', '0002_engines'),
        ('simulator', '0001_initial'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name='order',
                    name='product',
                    field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='orders', to='simulator.product'),
                ),
                migrations.DeleteModel(name='ServiceCall'),
                migrations.DeleteModel(name='Reservation'),
                migrations.DeleteModel(name='Charge'),
                migrations.DeleteModel(name='Shipment'),
                migrations.DeleteModel(name='Message'),
                migrations.DeleteModel(name='ServiceSwitch'),
                migrations.DeleteModel(name='Product'),
            ],
        ),
    ]
