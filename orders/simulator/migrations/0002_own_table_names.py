"""The tables the simulator took over from the order app get the simulator's names."""

from django.db import migrations

MODELS = ['product', 'serviceswitch', 'servicecall', 'reservation', 'charge', 'shipment', 'message']


class Migration(migrations.Migration):

    dependencies = [
        ('simulator', '0001_initial'),
        ('orders', '0003_simulator_models_move'),
    ]

    operations = [migrations.AlterModelTable(name=name, table=None) for name in MODELS]
