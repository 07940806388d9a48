"""The simulated services' models leave the order app, keeping their tables and rows.

Their tables were created by orders 0001 under the order app's names; this migration only
tells Django's state they belong here now. 0002 then gives the tables this app's names.
"""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ('orders', '0002_engines'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name='Product',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('sku', models.CharField(max_length=32, unique=True)),
                        ('name', models.CharField(max_length=100)),
                        ('price_cents', models.PositiveIntegerField()),
                        ('stock', models.PositiveIntegerField(help_text='Units on the shelf.')),
                        ('reserved', models.PositiveIntegerField(default=0, help_text='Units held for open orders.')),
                    ],
                    options={
                        'db_table': 'orders_product',
                        'ordering': ['sku'],
                    },
                ),
                migrations.CreateModel(
                    name='ServiceSwitch',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('service', models.CharField(choices=[('inventory', 'inventory'), ('payment', 'payment'), ('shipping', 'shipping'), ('email', 'email'), ('sms', 'sms')], max_length=16, unique=True)),
                        ('mode', models.CharField(choices=[('healthy', 'healthy'), ('down', 'down'), ('flaky', 'flaky'), ('slow', 'slow'), ('reject', 'reject'), ('crash', 'crash')], default='healthy', max_length=16)),
                        ('failures', models.PositiveIntegerField(default=2, help_text='Flaky: how many calls fail before it recovers.')),
                        ('failures_left', models.PositiveIntegerField(default=0)),
                        ('latency_ms', models.PositiveIntegerField(default=3000, help_text='Slow: how long each call takes, in milliseconds.')),
                        ('updated_at', models.DateTimeField(auto_now=True)),
                    ],
                    options={
                        'db_table': 'orders_serviceswitch',
                        'ordering': ['id'],
                    },
                ),
                migrations.CreateModel(
                    name='Message',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('key', models.CharField(max_length=100, unique=True)),
                        ('channel', models.CharField(choices=[('email', 'email'), ('sms', 'sms')], max_length=8)),
                        ('recipient', models.CharField(max_length=200)),
                        ('body', models.TextField()),
                        ('created_at', models.DateTimeField(auto_now_add=True)),
                        ('order', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='messages', to='orders.order')),
                    ],
                    options={
                        'db_table': 'orders_message',
                    },
                ),
                migrations.CreateModel(
                    name='Charge',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('key', models.CharField(max_length=100, unique=True)),
                        ('payment_id', models.CharField(max_length=64, unique=True)),
                        ('amount_cents', models.PositiveIntegerField()),
                        ('refunded_at', models.DateTimeField(blank=True, null=True)),
                        ('created_at', models.DateTimeField(auto_now_add=True)),
                        ('order', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='charges', to='orders.order')),
                    ],
                    options={
                        'db_table': 'orders_charge',
                    },
                ),
                migrations.CreateModel(
                    name='Reservation',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('key', models.CharField(max_length=100, unique=True)),
                        ('quantity', models.PositiveIntegerField()),
                        ('state', models.CharField(choices=[('reserved', 'reserved'), ('committed', 'committed'), ('released', 'released')], default='reserved', max_length=16)),
                        ('created_at', models.DateTimeField(auto_now_add=True)),
                        ('updated_at', models.DateTimeField(auto_now=True)),
                        ('order', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='reservations', to='orders.order')),
                        ('product', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, to='simulator.product')),
                    ],
                    options={
                        'db_table': 'orders_reservation',
                    },
                ),
                migrations.CreateModel(
                    name='Shipment',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('key', models.CharField(max_length=100, unique=True)),
                        ('tracking_number', models.CharField(max_length=64, unique=True)),
                        ('cancelled_at', models.DateTimeField(blank=True, null=True)),
                        ('created_at', models.DateTimeField(auto_now_add=True)),
                        ('order', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='shipments', to='orders.order')),
                    ],
                    options={
                        'db_table': 'orders_shipment',
                    },
                ),
                migrations.CreateModel(
                    name='ServiceCall',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('service', models.CharField(choices=[('inventory', 'inventory'), ('payment', 'payment'), ('shipping', 'shipping'), ('email', 'email'), ('sms', 'sms')], db_index=True, max_length=16)),
                        ('operation', models.CharField(max_length=32)),
                        ('idempotency_key', models.CharField(max_length=100)),
                        ('attempt', models.PositiveIntegerField()),
                        ('outcome', models.CharField(choices=[('ok', 'ok'), ('replayed', 'replayed'), ('error', 'error'), ('rejected', 'rejected')], max_length=16)),
                        ('error', models.TextField(blank=True)),
                        ('duration_ms', models.PositiveIntegerField(default=0)),
                        ('started_at', models.DateTimeField(blank=True, null=True)),
                        ('created_at', models.DateTimeField(auto_now_add=True)),
                        ('order', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='calls', to='orders.order')),
                    ],
                    options={
                        'db_table': 'orders_servicecall',
                        'ordering': ['id'],
                        'constraints': [models.UniqueConstraint(fields=('order', 'service', 'operation', 'attempt'), name='one_ledger_row_per_attempt')],
                    },
                ),
            ],
        ),
    ]
