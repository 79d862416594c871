"""The operator/worker contract: environment round-trips and errors that name the variable."""

import pytest
from optimus_worker import contract


def _env(**overrides: str) -> dict[str, str]:
    base = contract.PodEnv(
        job="mnist", namespace="ml", role="worker", rank=1, num_ps=2, num_workers=3,
        mode="ps-sync", rendezvous="mnist-g0-worker-0.mnist.ml.svc:29500",
        checkpoint_dir="/ckpt", generation=4, metrics_port=9400, control_port=9401,
        checkpoint_interval_steps=20, task="mlp", global_batch_size=96, max_epochs=30,
    ).to_env()
    base.update(overrides)
    return base


def test_round_trip() -> None:
    parsed = contract.parse_env(_env())
    assert parsed.to_env() == _env()
    assert not parsed.is_chief
    assert contract.parse_env(_env(OPTIMUS_RANK="0")).is_chief


@pytest.mark.parametrize(
    ("overrides", "names"),
    [
        ({"OPTIMUS_RANK": ""}, "OPTIMUS_RANK"),
        ({"OPTIMUS_RANK": "3"}, "OPTIMUS_RANK"),
        ({"OPTIMUS_RANK": "x"}, "OPTIMUS_RANK"),
        ({"OPTIMUS_MODE": "ring"}, "OPTIMUS_MODE"),
        ({"OPTIMUS_ROLE": "chief"}, "OPTIMUS_ROLE"),
        ({"OPTIMUS_NUM_PS": "0"}, "OPTIMUS_NUM_PS"),
        ({"OPTIMUS_JOB": ""}, "OPTIMUS_JOB"),
        ({"LOCAL_RANK": "2", "LOCAL_WORLD_SIZE": "2"}, "LOCAL_RANK"),
        ({"LOCAL_WORLD_SIZE": "0"}, "LOCAL_WORLD_SIZE"),
    ],
)
def test_bad_environment_names_the_variable(overrides: dict[str, str], names: str) -> None:
    with pytest.raises(contract.ContractError, match=names):
        contract.parse_env(_env(**overrides))


def test_allreduce_needs_no_ps() -> None:
    env = _env(OPTIMUS_MODE="allreduce", OPTIMUS_NUM_PS="0")
    assert contract.parse_env(env).num_ps == 0


def test_names_fit_kubernetes_limits() -> None:
    name = contract.pod_name("a" * 40, "worker", 12, 103)
    assert len(name) <= 63


@pytest.mark.parametrize(("pod_rank", "per_pod"), [(0, 1), (1, 1), (2, 4)])
def test_workers_get_the_standard_torch_distributed_environment(pod_rank: int,
                                                                per_pod: int) -> None:
    env = contract.parse_env(_env(OPTIMUS_RANK=str(pod_rank), LOCAL_WORLD_SIZE=str(per_pod)))
    for local in range(per_pod):
        torch_env = env.for_local_rank(local).torch_env()
        assert torch_env == {
            "MASTER_ADDR": "mnist-g0-worker-0.mnist.ml.svc", "MASTER_PORT": "29500",
            "WORLD_SIZE": str(3 * per_pod), "RANK": str(pod_rank * per_pod + local),
            "LOCAL_RANK": str(local), "LOCAL_WORLD_SIZE": str(per_pod),
            "GROUP_RANK": str(pod_rank),
        }
        assert env.for_local_rank(local).is_chief == (pod_rank == 0 and local == 0)
    with pytest.raises(contract.ContractError, match="LOCAL_RANK"):
        env.for_local_rank(per_pod)


def test_parameter_servers_get_no_torch_distributed_environment() -> None:
    env = contract.parse_env(_env(OPTIMUS_ROLE="ps", OPTIMUS_RANK="0"))
    assert env.torch_env() == {} and "RANK" not in env.to_env()
    assert env.termination_log == "" and contract.ENV_TERMINATION_LOG not in env.to_env()
