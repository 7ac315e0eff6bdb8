"""``aurora-rl services up``: a private Redis and Ray node for interactive work and job submission."""

from __future__ import annotations

import shlex


def register(sub) -> None:
    parser = sub.add_parser("services", help="local Redis and Ray for development")
    cmds = parser.add_subparsers(dest="services_command", metavar="ACTION", required=True)
    up = cmds.add_parser("up", help="start a private redis-server and Ray head node; Ctrl-C stops both")
    up.add_argument("--num-cpus", type=int, default=None, help="logical CPUs the Ray node offers")
    up.set_defaults(handler=services_up)


def services_up(args) -> int:
    import signal
    import threading

    from aurora_rl.services.ray_cluster import LocalRayNode
    from aurora_rl.services.redis_server import RedisServer

    stop = threading.Event()
    # Both set explicitly: a process started with SIGINT ignored (by a parent that ignores it)
    # would otherwise never see Ctrl-C and keep both services running.
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with RedisServer() as redis_server, LocalRayNode(num_cpus=args.num_cpus) as node:
        env = {**node.client_env(), "AURORA_REDIS_URL": redis_server.url}
        print(f"redis-server pid {redis_server.pid}: {redis_server.url}")
        print(f"Ray head {node.address}, dashboard {node.dashboard_url}")
        token = node.token_path
        print(f"The dashboard's login asks for a token: it is in {token} (cat {shlex.quote(str(token))})")
        print("In another shell, to submit jobs to this node:")
        for key, value in env.items():
            print(f"  export {key}={shlex.quote(value)}")
        print("Ctrl-C stops both.", flush=True)
        stop.wait()
    print("stopped")
    return 0
