"""``python -m kanol_actes_pes.simulators.helios --port 8091 [--ack-delay 0.05] ...``."""

from __future__ import annotations

import argparse

import uvicorn

from kanol_actes_pes.simulators.helios.app import HeliosConfig, create_simulator_app
from kanol_common.logging import configure_logging
from kanol_common.settings import CommonSettings


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m kanol_actes_pes.simulators.helios",
        description="Simulated Hélios gateway for PES V2 flows (not the real thing).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8091)
    parser.add_argument("--ack-delay", type=float, default=0.0, help="seconds before a PES_ACQUIT")
    parser.add_argument(
        "--retour-delay", type=float, default=1.0, help="seconds before a PES_Retour"
    )
    parser.add_argument(
        "--failure-rate", type=float, default=0.0, help="share of deposits answered 503"
    )
    parser.add_argument(
        "--refusal-rate", type=float, default=0.0, help="share of valid flows answered KO"
    )
    parser.add_argument(
        "--unknown-idcoll", action="append", default=[], help="an IdColl Hélios does not know"
    )
    parser.add_argument("--no-retours", action="store_true", help="never offer PES_Retour files")
    parser.add_argument("--seed", type=int, default=None, help="seed of the random draws")
    return parser.parse_args()


def main() -> None:
    arguments = _arguments()
    configure_logging(CommonSettings(service_name="helios-simulator"))
    config = HeliosConfig(
        ack_delay=arguments.ack_delay,
        retour_delay=arguments.retour_delay,
        failure_rate=arguments.failure_rate,
        refusal_rate=arguments.refusal_rate,
        unknown_id_colls=frozenset(arguments.unknown_idcoll),
        retours=not arguments.no_retours,
        seed=arguments.seed,
    )
    uvicorn.run(
        create_simulator_app(config), host=arguments.host, port=arguments.port, log_config=None
    )


if __name__ == "__main__":
    main()
