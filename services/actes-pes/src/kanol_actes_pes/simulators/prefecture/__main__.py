"""``python -m kanol_actes_pes.simulators.prefecture --port 8090 [--ack-delay 0.05] ...``."""

from __future__ import annotations

import argparse
import os
from datetime import date
from pathlib import Path

import uvicorn

from kanol_actes_pes.simulators.prefecture.app import SimulatorConfig, create_simulator_app
from kanol_common.logging import configure_logging
from kanol_common.settings import CommonSettings


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m kanol_actes_pes.simulators.prefecture",
        description="Simulated @CTES gateway and prefecture (not the real thing).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument(
        "--state",
        default=str(
            Path(os.environ.get("KANOL_DATA_DIR", "data")) / "prefecture-simulator.sqlite3"
        ),
        help="SQLite file holding transmissions and queued replies (':memory:' to forget)",
    )
    parser.add_argument("--ack-delay", type=float, default=0.0, help="seconds before a reply")
    parser.add_argument(
        "--anomaly-rate", type=float, default=0.0, help="share of valid actes answered 1-3"
    )
    parser.add_argument("--max-per-hour", type=int, default=1000, help="transmissions per hour")
    parser.add_argument(
        "--classification-date",
        type=date.fromisoformat,
        default=None,
        help="override the version the classification declares (YYYY-MM-DD)",
    )
    parser.add_argument(
        "--classification",
        type=Path,
        default=None,
        help="RetourClassification file the prefecture holds (default: the shipped seed)",
    )
    parser.add_argument(
        "--failure-rate", type=float, default=0.0, help="share of transmissions answered 503"
    )
    parser.add_argument("--seed", type=int, default=None, help="seed of the anomalie draw")
    return parser.parse_args()


def main() -> None:
    arguments = _arguments()
    configure_logging(CommonSettings(service_name="prefecture-simulator"))
    state = arguments.state if arguments.state == ":memory:" else Path(arguments.state)
    config = SimulatorConfig(
        state_path=state,
        ack_delay=arguments.ack_delay,
        anomaly_rate=arguments.anomaly_rate,
        max_per_hour=arguments.max_per_hour,
        classification_date=arguments.classification_date,
        classification_xml=arguments.classification.read_bytes()
        if arguments.classification
        else None,
        failure_rate=arguments.failure_rate,
        seed=arguments.seed,
    )
    uvicorn.run(
        create_simulator_app(config), host=arguments.host, port=arguments.port, log_config=None
    )


if __name__ == "__main__":
    main()
