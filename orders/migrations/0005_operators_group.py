"""The "operators" group: users in it may place orders, flip switches and act on orders."""

from django.contrib.auth.management import create_permissions
from django.db import migrations


def create_operators(apps, schema_editor):
    # Permissions are normally created after all migrations; this one needs its own now.
    orders = apps.get_app_config("orders")
    orders.models_module = True
    create_permissions(orders, apps=apps, verbosity=0)
    orders.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    operate = Permission.objects.get(content_type__app_label="orders", codename="operate_orders")
    group, _ = Group.objects.get_or_create(name="operators")
    group.permissions.add(operate)


def remove_operators(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name="operators").delete()


class Migration(migrations.Migration):

    dependencies = [
        ('orders', '0004_statuses_and_operator_actions'),
        ('auth', '0012_alter_user_first_name_max_length'),
        ('contenttypes', '0002_remove_content_type_name'),
    ]

    operations = [migrations.RunPython(create_operators, remove_operators)]
