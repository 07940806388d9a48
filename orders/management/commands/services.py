"""Read or set the failure switches of the simulated services."""

from argparse import ArgumentParser

from django.core.management.base import BaseCommand, CommandError

from orders.actions import record_switch, terminal_user
from orders.contract import SERVICES
from orders.forms import SwitchForm, apply_switch
from orders.simulator.models import Mode, ServiceSwitch


class Command(BaseCommand):
    help = "Show the switches, or set one: services set NAME MODE [--failures N] [--latency-ms T]"

    def add_arguments(self, parser: ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="action")
        setter = sub.add_parser("set", help="Set one service's mode.")
        setter.add_argument("name", help=f"one of: {', '.join(SERVICES)}")
        setter.add_argument("mode", help=f"one of: {', '.join(Mode.values)}")
        # Passed to the switch form as typed: it reads ASCII digits within bounds only.
        setter.add_argument(
            "--failures",
            help="flaky: how many calls fail (default: the last count set, 2 at first)",
        )
        setter.add_argument("--latency-ms", help="slow: milliseconds per call")

    def handle(self, *args: object, **options: object) -> None:
        if options.get("action") == "set":
            self._set(options)
        for switch in ServiceSwitch.objects.order_by("id"):
            self.stdout.write(f"{switch.service:<10} {switch.summary}")

    def _set(self, options: dict) -> None:
        form = SwitchForm(
            {
                "service": options["name"],
                "mode": options["mode"],
                "failures": options.get("failures"),
                "latency_ms": options.get("latency_ms"),
            }
        )
        if not form.is_valid():
            problems = []
            for field, errors in form.errors.items():
                hint = {
                    "service": f" (services: {', '.join(SERVICES)})",
                    "mode": f" (modes: {', '.join(Mode.values)})",
                }.get(field, "")
                problems.append(f"{field}: {' '.join(errors)}{hint}")
            raise CommandError("; ".join(problems))
        switch = apply_switch(form.cleaned_data)
        record_switch(switch.service, switch.summary, actor=terminal_user())
