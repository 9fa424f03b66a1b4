from datetime import date

from django.core.management import BaseCommand, CommandError

from segments.services.layers import MODELS, recompute_layers


class Command(BaseCommand):
    help = "Recompute the layering models (RFM, AIPL, lifecycle, ladder) and their model segments, set-based."

    def add_arguments(self, parser):
        parser.add_argument("models", nargs="*", help=f"Some of {', '.join(MODELS)} (default: all).")
        parser.add_argument("--as-of", type=date.fromisoformat, help="RFM reference date (YYYY-MM-DD), to backtest.")

    def handle(self, *args, models: list[str], as_of: date | None, **options):
        if unknown := sorted(set(models) - set(MODELS)):
            raise CommandError(f"unknown models: {', '.join(unknown)}; expected some of {', '.join(MODELS)}")
        outcomes = recompute_layers(tuple(models) or MODELS, as_of=as_of)
        for model, outcome in outcomes.items():
            line = f"{model}: " + ", ".join(f"{key} {value}" for key, value in outcome.items())
            self.stdout.write(self.style.ERROR(line) if "error" in outcome else line)
        if any("error" in outcome for outcome in outcomes.values()):
            raise CommandError("some models failed; see above")
