"""`secagg client run|init-model` and `secagg eval`: the client organisation's commands."""

from __future__ import annotations

import argparse
import json

from protocol import modes
from secagg.cli import print_json, print_result
from secagg.errors import ParameterError


def _client_run(args: argparse.Namespace) -> int:
    import logging

    from clients.run import run_client
    from clients.settings import load_client_settings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    settings = load_client_settings(
        args.config,
        id=args.id,
        aggregator=args.aggregator,
        pki_dir=args.pki_dir,
        insecure=True if args.insecure else None,
        exact_levels=True if args.exact_levels else None,
        colluders=args.colluders,
    )
    if args.allow:
        settings = settings.with_opt_in(*args.allow)
    stats = run_client(settings)
    print(
        json.dumps(
            {
                "client": settings.id,
                "rounds_completed": stats.rounds_completed,
                "rounds_aborted": stats.rounds_aborted,
            }
        ),
        flush=True,
    )
    return 0


def _client_init_model(args: argparse.Namespace) -> int:
    """Every party builds θ₀ from the same [client.training] settings; the aggregator loads it."""
    import numpy as np

    from clients.settings import load_client_settings
    from clients.training.face_trainer import FaceTrainingSettings, initial_model

    settings = load_client_settings(args.config, insecure=True)
    if settings.trainer != "face":
        raise ParameterError('init-model needs trainer = "face" and a [client.training] table')
    theta = initial_model(FaceTrainingSettings(**settings.training), channels=args.channels)
    np.save(args.out, theta)
    print_result(
        {"out": args.out, "dim": int(theta.size), "backbone": settings.training.get("backbone")},
        as_json=True,
    )
    return 0


def _eval(args: argparse.Namespace) -> int:
    """Face verification of a saved backbone (``secagg eval``)."""
    from clients.training.evaluate import evaluate_checkpoint

    if args.data is not None and (args.pairs is not None or args.images is not None):
        raise ParameterError("give either --data or --pairs with --images, not both")
    if args.data is None and (args.pairs is None or args.images is None):
        raise ParameterError("give --data SPEC, or --pairs PAIRS together with --images DIR")
    try:
        result = evaluate_checkpoint(
            args.checkpoint,
            data=args.data,
            pairs=args.pairs,
            images=args.images,
            device=args.device,
            folds=args.folds,
            seed=args.seed,
            max_impostor=args.max_impostor,
            batch_size=args.batch_size,
            flip=not args.no_flip,
        )
    except (OSError, ValueError, KeyError) as exc:
        raise ParameterError(f"eval: {exc}") from exc
    summary = result.to_json()
    if args.json:
        print_json(summary)
        return 0
    print(
        f"{summary['pairs']} pairs ({summary['genuine']} genuine, {summary['impostor']} "
        f"impostor), {summary['folds']} folds"
    )
    print(f"accuracy      {summary['accuracy_mean']:.4f} ± {summary['accuracy_std']:.4f}")
    for key, tar in summary["tar_at_far"].items():
        note = "" if summary["far_resolved"][key] else "  (too few impostors: TAR at FAR 0)"
        print(
            f"TAR@FAR={key:5s} {tar:.4f}  (achieved FAR {summary['far_achieved'][key]:.2e}){note}"
        )
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `client run|init-model` and `eval`."""
    client = sub.add_parser("client", help="the client daemon")
    client_sub = client.add_subparsers(dest="client_command", required=True)
    run = client_sub.add_parser("run", help="run the client daemon")
    run.add_argument("--config", help="client.toml")
    run.add_argument("--id", type=int)
    run.add_argument("--aggregator", help="host:port")
    run.add_argument("--pki-dir")
    run.add_argument("--insecure", action="store_true", help="no TLS (development only)")
    run.add_argument("--exact-levels", action="store_true", help="synthetic integer inputs")
    run.add_argument(
        "--allow",
        action="append",
        choices=[*modes.opt_ins(), "semi-honest"],
        help="opt this client's policy into a weaker mode or profile (repeatable; logged "
        "with what it gives up)",
    )
    run.add_argument("--colluders", type=int, help="n_C this client assumes (policy.colluders)")
    run.set_defaults(func=_client_run)
    init_model = client_sub.add_parser(
        "init-model",
        help="write the initial model (.npy) the aggregator's `initial_model` points at",
    )
    init_model.add_argument("--config", required=True, help="client.toml with [client.training]")
    init_model.add_argument("--out", required=True, help="where the float32 .npy goes")
    init_model.add_argument("--channels", type=int, default=1, help="1: grayscale, 3: RGB")
    init_model.set_defaults(func=_client_init_model)
    ev = sub.add_parser("eval", help="face verification of a saved backbone checkpoint")
    ev.add_argument("--checkpoint", required=True, help="backbone checkpoint (torch.save'd dict)")
    ev.add_argument("--data", help="dataset spec (folder, .npz, orl, synthetic:I:N): all pairs")
    ev.add_argument("--pairs", help="LFW-style pairs.txt (with --images)")
    ev.add_argument("--images", help="identity folder the pairs refer to")
    ev.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda:0, ...")
    ev.add_argument("--folds", type=int, default=10, help="folds when the pairs have none")
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--max-impostor", type=int, default=None, help="cap impostor pairs (--data)")
    ev.add_argument("--batch-size", type=int, default=256)
    ev.add_argument("--no-flip", action="store_true", help="embed without the flipped image")
    ev.add_argument("--json", action="store_true", help="print one JSON object")
    ev.set_defaults(func=_eval)
