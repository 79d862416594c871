"""Scenario 5: fourteen malformed TrainingJobs, each refused by the schema (kubectl apply
fails naming the field) or marked Invalid by the operator (a condition naming the field),
while a running job is not disturbed: same pods, same generation, no restart. A job whose
task cannot be imported fails saying why: the import error reaches the Failed condition and
the event (the worker's termination message, through the pod's status), and Resizing is not
left True.

The running job's templates carry a required node affinity, a toleration and a priority
class: its pods keep all three beside the operator's node pin, and the scale subresource
reports the job's worker count and a selector of its worker pods."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from e2e.demo.stack import Stack
from e2e.scenarios.checks import names_field
from e2e.scenarios.conftest import MakeStack
from e2e.scenarios.helpers import (
    apply_job,
    describe,
    generation,
    job_manifest,
    phase,
    running_pods,
    wait_job,
    wait_until,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

Mutation = Callable[[dict[str, Any]], None]


def _set(path: str, value: Any) -> Mutation:
    def mutate(manifest: dict[str, Any]) -> None:
        *parents, leaf = path.split(".")
        target = manifest
        for key in parents:
            target = target[key]
        target[leaf] = value
    return mutate


def _delete(path: str) -> Mutation:
    def mutate(manifest: dict[str, Any]) -> None:
        *parents, leaf = path.split(".")
        target = manifest
        for key in parents:
            target = target[key]
        del target[leaf]
    return mutate


def _gpus(count: int) -> Mutation:
    def mutate(manifest: dict[str, Any]) -> None:
        container = manifest["spec"]["workers"]["template"]["spec"]["containers"][0]
        container["resources"]["limits"]["nvidia.com/gpu"] = count
    return mutate


#: (job name, what is wrong, the field a message must name, the change)
MALFORMED: list[tuple[str, str, str, Mutation]] = [
    ("bad-type", "globalBatchSize is a string", "spec.globalBatchSize",
     _set("spec.globalBatchSize", "sixty-four")),
    ("bad-minmax", "workers min > max", "spec.workers", _set("spec.workers.min", 5)),
    ("bad-batch", "negative batch", "spec.globalBatchSize", _set("spec.globalBatchSize", -8)),
    ("bad-mode", "unknown mode", "spec.mode", _set("spec.mode", "ring")),
    ("bad-template", "workers without a template", "spec.workers.template",
     _delete("spec.workers.template")),
    ("bad-mount", "a relative checkpoint mountPath", "spec.checkpoint.mountPath",
     _set("spec.checkpoint.mountPath", "checkpoints")),
    ("bad-name-" + "x" * 60, "a name over 63 characters", "metadata.name", lambda m: None),
    ("bad-epochs", "maxEpochs 0", "spec.convergence.maxEpochs",
     _set("spec.convergence.maxEpochs", 0)),
    ("bad-allreduce-ps", "allreduce with parameter servers", "spec.parameterServers",
     _set("spec.mode", "allreduce")),
    ("bad-priority", "priority out of range", "spec.priority", _set("spec.priority", 5000)),
    ("bad-name-forty-one-characters-long-abcdefg", "a name over the operator's 40 characters",
     "metadata.name", lambda m: None),
    ("bad-affinity", "a node affinity operator Kubernetes does not know",
     "spec.workers.template.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuring"
     "Execution.nodeSelectorTerms[0].matchExpressions[0].operator",
     _set("spec.workers.template.spec.affinity", {"nodeAffinity": {
         "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
             {"matchExpressions": [{"key": "kubernetes.io/os", "operator": "Near",
                                    "values": ["linux"]}]}]}}})),
    ("bad-no-task", "neither a task nor a command", "spec.task", _delete("spec.task")),
    ("bad-suspend", "suspend is a string", "spec.suspend", _set("spec.suspend", "yes")),
]
#: refused at apply time by the CRD's schema (CEL rules included), never stored
REFUSED_AT_APPLY = {"bad-type", "bad-minmax", "bad-mode", "bad-name-" + "x" * 60,
                    "bad-name-forty-one-characters-long-abcdefg"}

PRIORITY_CLASS = "optimus-e2e-training"
#: the user's scheduling conventions on the running job's pod templates
CONVENTIONS: dict[str, Any] = {
    "priorityClassName": PRIORITY_CLASS,
    "tolerations": [{"key": "optimus.dev/e2e", "operator": "Exists", "effect": "NoSchedule"}],
    "affinity": {"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "kubernetes.io/os", "operator": "In",
                                   "values": ["linux"]}]}]},
        "preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 10, "preference": {"matchExpressions": [
                {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}]}}]}},
}


@pytest.fixture(scope="module")
def stack(make_stack: MakeStack) -> Stack:
    return make_stack(nodes=1, gpus_per_node=4)


def test_malformed_jobs_are_refused_or_invalid_and_never_disturb_a_running_job(
        stack: Stack) -> None:
    checkpoints = stack.workdir / "checkpoints"
    # A running job that cannot be resized (min == max): its pods must stay as they are.
    steady = job_manifest("steady", checkpoints, max_epochs=50, ps=(1, 1), workers=(1, 1))
    for group in ("parameterServers", "workers"):
        steady["spec"][group]["template"]["spec"].update(copy.deepcopy(CONVENTIONS))
    stack.kubectl.apply_text(yaml.safe_dump({
        "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
        "metadata": {"name": PRIORITY_CLASS}, "value": 1000,
        "description": "the bad-input scenario's running job"}))
    apply_job(stack.kubectl, steady)
    wait_job(stack, "steady", ("Running",), timeout=120)
    pods = running_pods(stack.kubectl, "steady")
    before = {p["metadata"]["uid"] for p in pods}
    generation_before = generation(stack.kubectl.trainingjob("steady"))
    assert before
    for pod in pods:
        _keeps_the_templates_conventions(pod)
    _scale_reports_the_workers(stack, "steady")

    outcomes: dict[str, str] = {}
    invalid_expected: dict[str, str] = {}
    for name, what, field, mutate in MALFORMED:
        manifest = job_manifest(name, checkpoints)
        mutate(manifest)
        done = apply_job(stack.kubectl, manifest, check=False)
        if name in REFUSED_AT_APPLY:
            assert done.returncode != 0, f"{what}: the API server stored it"
        if done.returncode != 0:
            assert names_field(done.stderr, field), (
                f"{what}: kubectl refused it but its message does not name {field}: "
                f"{done.stderr}")
            outcomes[name] = f"refused by the API server: {done.stderr.strip()[:160]}"
        else:
            invalid_expected[name] = field

    for name, field in invalid_expected.items():
        what = next(w for n, w, _, _ in MALFORMED if n == name)
        obj = wait_job(stack, name, ("Invalid",), timeout=60)
        messages = " ".join(f"{c.get('reason')}: {c.get('message')}"
                            for c in obj["status"].get("conditions", []))
        assert names_field(messages, field), (
            f"{what}: marked Invalid but no condition names {field}: {messages}")
        assert not running_pods(stack.kubectl, name), f"{name} is Invalid but has pods"
        outcomes[name] = f"Invalid: {messages[:160]}"

    assert len(outcomes) == len(MALFORMED)
    steady_now = stack.kubectl.trainingjob("steady")
    assert phase(steady_now) in ("Running", "Succeeded"), describe(stack, "steady")
    assert generation(steady_now) == generation_before
    after = {p["metadata"]["uid"] for p in running_pods(stack.kubectl, "steady")}
    assert after == before or phase(steady_now) == "Succeeded", "the running job was disturbed"
    # Still making progress with the invalid jobs around.
    epoch = (steady_now["status"].get("progress") or {}).get("epoch") or 0
    wait_until(stack, "the steady job to keep training", lambda: (
        (stack.kubectl.trainingjob("steady")["status"].get("progress") or {}).get("epoch")
        or 0) > epoch, timeout=90)
    for name, outcome in outcomes.items():
        print(f"{name[:24]:24} {outcome}")


def _keeps_the_templates_conventions(pod: dict[str, Any]) -> None:
    """The pod has the template's priority class, toleration and node affinity (required
    and preferred), and the operator's pin ANDed into the required term."""
    spec = pod["spec"]
    name = pod["metadata"]["name"]
    assert spec.get("priorityClassName") == PRIORITY_CLASS, name
    assert CONVENTIONS["tolerations"][0] in spec.get("tolerations", []), name
    node_affinity = spec["affinity"]["nodeAffinity"]
    wanted = CONVENTIONS["affinity"]["nodeAffinity"]
    assert (node_affinity["preferredDuringSchedulingIgnoredDuringExecution"]
            == wanted["preferredDuringSchedulingIgnoredDuringExecution"]), name
    (term,) = node_affinity["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"]
    (template_term,) = wanted["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"]
    assert term["matchExpressions"] == template_term["matchExpressions"], name
    assert term["matchFields"] == [{"key": "metadata.name", "operator": "In",
                                    "values": [spec["nodeName"]]}], name


def _scale_reports_the_workers(stack: Stack, name: str) -> None:
    """The scale subresource: replicas is spec.workers.max, status.replicas the workers
    running, and its selector (status.selector) selects exactly the job's worker pods."""
    scale = json.loads(stack.kubectl.run(
        "get", "--raw", f"/apis/optimus.dev/v1alpha1/namespaces/{stack.kubectl.namespace}"
        f"/trainingjobs/{name}/scale", namespaced=False).stdout)
    job = stack.kubectl.trainingjob(name)
    assert scale["spec"]["replicas"] == job["spec"]["workers"]["max"]
    assert scale["status"]["replicas"] == job["status"]["allocation"]["workers"]
    selected = stack.kubectl.items("pods", "-l", scale["status"]["selector"])
    roles = {p["metadata"]["labels"]["optimus.dev/role"] for p in selected
             if not p["metadata"].get("deletionTimestamp")}
    assert roles == {"worker"}, [p["metadata"]["name"] for p in selected]
    assert {p["metadata"]["labels"]["optimus.dev/job"] for p in selected} == {name}


def test_an_absurd_gpu_request_is_invalid_naming_the_field(stack: Stack) -> None:
    manifest = job_manifest("bad-gpus", stack.workdir / "checkpoints")
    _gpus(1000)(manifest)
    done = apply_job(stack.kubectl, manifest, check=False)
    if done.returncode != 0:
        assert names_field(done.stderr, "nvidia.com/gpu"), done.stderr
        return
    obj = wait_job(stack, "bad-gpus", ("Invalid",), timeout=30)
    messages = " ".join(str(c.get("message")) for c in obj["status"].get("conditions", []))
    assert names_field(messages, "nvidia.com/gpu"), messages


def test_a_task_that_cannot_be_imported_fails_saying_why(stack: Stack) -> None:
    name = "bad-import"
    manifest = job_manifest(name, stack.workdir / "checkpoints", task="nosuch.module:attr",
                            restartLimit=0)
    apply_job(stack.kubectl, manifest)
    obj = wait_job(stack, name, ("Failed",), timeout=120)
    conditions = {c["type"]: c for c in obj["status"].get("conditions", [])}
    failed = conditions["Failed"]
    assert "nosuch" in failed["message"] and "cannot import" in failed["message"], failed
    assert conditions.get("Resizing", {}).get("status") != "True", conditions
    warnings = [e for e in stack.kubectl.events()
                if (e.get("involvedObject") or {}).get("name") == name
                and e.get("reason") == "RestartLimitExceeded"]
    assert any("nosuch" in e.get("message", "") for e in warnings), warnings
    print(f"bad-import: {failed['message'][:200]}")
