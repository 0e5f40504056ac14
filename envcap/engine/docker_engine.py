"""The Docker Engine API (Docker or Podman's compatible socket) behind envcap's ContainerEngine.

The only module that imports the Docker SDK, and only when an engine is first used. Why the
low-level ``APIClient``: builds must be cancellable (close the connection, remove the builder's
containers) and runs must stream both streams while writing stdin, which the high-level client hides.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shlex
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from envcap import _log
from envcap.engine import (
    OWNER_LABEL,
    BuildEvent,
    Commit,
    ContainerInfo,
    ImageInfo,
    OutputCallback,
    RunResult,
    RunSpec,
    _init,
)
from envcap.engine._answers import (
    EngineFlavour,
    familiar,
    flavour_of,
    image_info,
    offers_gpus,
    said,
    short_reason,
    split_ref,
)
from envcap.engine._attach import create_container, run_attached
from envcap.engine._buildlog import BuildLog
from envcap.engine.errors import (
    BuildStepFailed,
    ContainerFailed,
    EngineError,
    EngineLost,
    EngineRefused,
    EngineUnavailable,
    ImageMissing,
    ImagePullFailed,
)
from envcap.engine.leftovers import BuildJournal

LOGGER = _log.get("engine")
API_VERSION = re.compile(r"\d+\.\d+")

class DockerEngine:
    """One engine endpoint; the SDK client is created lazily and re-created after a cancelled build."""

    def __init__(self, endpoint: str, *, timeout: float = 60.0, environ: Mapping[str, str] | None = None) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self._environ = dict(os.environ if environ is None else environ)
        self._client: Any = None
        self._flavour: EngineFlavour | None = None
        # Podman without its init binary (catatonit): --init runs envcap's stand-in instead (``_init``)
        self._stand_in_init = False

    # -- plumbing ---------------------------------------------------------------------------
    @property
    def api(self) -> Any:
        """The SDK client, made on first use; making it is the first contact (one ``/_ping``)."""
        if self._client is None:
            self._client = self._open()
        return self._client

    def _open(self) -> Any:
        """A client that speaks the engine's own API version, learnt from the ``/_ping`` answer.

        Why not ``APIClient(version="auto")``: that asks ``/version`` and then ``connect`` pings; the
        ping's ``Api-Version`` header says the same, so every command makes one round trip less. An
        engine that leaves the header out is asked ``/version`` as before.
        """
        import docker
        import requests
        from docker.constants import DEFAULT_DOCKER_API_VERSION
        from docker.utils import kwargs_from_env

        environment = dict(self._environ, DOCKER_HOST=self.endpoint)
        try:
            kwargs = kwargs_from_env(environment=environment)
        except docker.errors.DockerException as exc:
            raise EngineUnavailable(f"the engine settings for {self.endpoint} are unusable: {exc}.",
                                    hint="check DOCKER_HOST, DOCKER_TLS_VERIFY and DOCKER_CERT_PATH") from None
        kwargs["base_url"] = self.endpoint
        try:  # a version given makes no request; the engine's own is put in below
            client: Any = docker.APIClient(version=DEFAULT_DOCKER_API_VERSION, timeout=int(self.timeout), **kwargs)
        except docker.errors.DockerException as exc:
            raise self._unavailable(exc) from None
        try:
            answer = client.get(f"{client.base_url}/_ping", timeout=self.timeout)
            answer.raise_for_status()
            version = str(answer.headers.get("Api-Version") or "")
            if not API_VERSION.fullmatch(version):
                version = str(client.version(api_version=False)["ApiVersion"])
        except (requests.exceptions.RequestException, docker.errors.DockerException, ConnectionError,
                FileNotFoundError, OSError, KeyError, TypeError, ValueError) as exc:
            with contextlib.suppress(Exception):
                client.close()
            raise self._unavailable(exc) from None
        LOGGER.debug("engine %s: API version %s", self.endpoint, version)
        client._version = version  # the attribute version="auto" sets (docker-py 4 to 7), from the answer above
        return client

    def close(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()
            self._client = None

    def flavour(self) -> EngineFlavour:
        """Docker or Podman (asked once): they differ in what they need for ``--init`` and in their logs."""
        if self._flavour is None:
            with self._talking("version"):
                self._flavour = flavour_of(self.api.version())
            LOGGER.debug("%s is %s", self.endpoint, self._flavour)
        return self._flavour

    def _log_hint(self) -> str:
        if self._flavour is None:
            with contextlib.suppress(Exception):  # an engine that refused one request still says what it is
                self._flavour = flavour_of(self.api.version())
        if self._flavour == "podman":
            return "check the Podman service's log (the output of `podman system service`) and try again"
        return "check the engine's log (journalctl -u docker) and try again"

    def _unavailable(self, exc: BaseException) -> EngineUnavailable:
        reason = short_reason(exc)
        hint = ("start it (`sudo dockerd` or `sudo systemctl start docker`), or set DOCKER_HOST to a running engine")
        if reason == "permission denied":
            hint = "add your user to the docker group (then log in again), or run envcap with sudo"
        return EngineUnavailable(f"cannot reach the container engine at {self.endpoint}: {reason}.", hint=hint,
                                 reason=reason)

    def _lost(self, exc: BaseException) -> EngineLost:
        self.close()
        return EngineLost(f"the container engine at {self.endpoint} stopped answering ({short_reason(exc)}).",
                          hint="check that it is still running (it may have been restarted or killed), then try "
                               "again; what envcap had started there is removed by its next build or replay")

    @contextlib.contextmanager
    def _talking(self, what: str) -> Iterator[None]:
        """The one place where the SDK's exceptions become the engine's own family.

        A connection that breaks in the middle (the engine was killed: urllib3's ProtocolError,
        a chunked stream cut short, a reset socket) is EngineLost; an API error the code inside did
        not handle is EngineRefused, with the engine's own explanation; never a traceback.
        """
        import docker
        import requests
        import urllib3

        LOGGER.debug("%s: %s", self.endpoint, what)
        try:
            yield
        except docker.errors.APIError as exc:  # first: it is also a requests.HTTPError, which reads as "lost" below
            raise EngineRefused(f"the container engine at {self.endpoint} refused the request: {said(exc)}.",
                                hint=self._log_hint()) from None
        except (TimeoutError, requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError, urllib3.exceptions.HTTPError, ConnectionError, FileNotFoundError) as exc:
            raise self._lost(exc) from None
        except requests.exceptions.RequestException as exc:  # a read time-out: the engine stopped answering
            raise self._lost(exc) from None
        except docker.errors.DockerException as exc:
            raise self._lost(exc) from None

    # -- Protocol ---------------------------------------------------------------------------
    def ping(self) -> None:
        """First contact: any failure here means no engine answers at this endpoint."""
        import docker
        import requests

        LOGGER.debug("engine %s: ping", self.endpoint)
        try:
            if self._client is None:
                self._client = self._open()  # which pinged it
            else:
                self._client.ping()
        except (requests.exceptions.RequestException, docker.errors.DockerException, ConnectionError,
                FileNotFoundError, OSError) as exc:
            self.close()
            raise self._unavailable(exc) from None

    def image(self, ref: str) -> ImageInfo | None:
        import docker

        with self._talking(f"inspect image {ref}"):
            try:
                data = self.api.inspect_image(ref)
            except docker.errors.NotFound:
                return None
            except docker.errors.APIError as exc:
                if exc.status_code in (400, 404) or "invalid reference format" in said(exc):
                    return None  # an invalid reference is not an image the engine has (Podman: HTTP 500)
                raise
        return image_info(data)

    def pull(self, ref: str) -> ImageInfo:
        import docker

        repo, tag = split_ref(ref)
        with self._talking(f"pull {ref}"):
            try:
                for item in self.api.pull(repo, tag=tag or "latest", stream=True, decode=True):
                    if "error" in item:
                        raise ImagePullFailed(f"cannot pull the base image {ref}: {item['error']}.",
                                              hint="check its name and your registry login, or pass --base-image "
                                                   "with an image the engine already has")
            except docker.errors.APIError as exc:
                raise ImagePullFailed(f"cannot pull the base image {ref}: {said(exc)}.",
                                      hint="check its name and your registry login, or pass --base-image with an "
                                           "image the engine already has") from None
        found = self.image(ref)
        if found is None:
            raise ImagePullFailed(f"the engine reported {ref} pulled but does not have it.",
                                  hint="try the build again")
        return found

    def tag(self, image_id: str, ref: str) -> None:
        repo, tag = split_ref(ref)
        with self._talking(f"tag {image_id[:19]} as {ref}"):
            self.api.tag(image_id, repo, tag=tag or "latest", force=True)

    def remove_image(self, ref: str) -> None:
        import docker

        with self._talking(f"remove image {ref}"), contextlib.suppress(docker.errors.NotFound):
            self.api.remove_image(ref, force=True)

    def build(self, context: Path, *, tag: str, labels: dict[str, str],
              on_event: Callable[[BuildEvent], None] | None = None, network_disabled: bool = False) -> ImageInfo:
        """Classic-builder build; the tag is set only after the build succeeded.

        Why not ``build(tag=...)``: tagging last means an interrupted or failed build can never leave
        ``tag`` pointing at anything; the builder's own containers are removed (``forcerm``), and
        on Ctrl-C the connection is closed (which cancels the build) and every container the log
        named is removed as well. When the engine dies instead, nothing can be removed now: the
        journal of what the log named stays for the next run's sweep (``leftovers``).
        """
        journal = BuildJournal(self.endpoint)
        try:
            info = self._build(context, tag, labels, BuildLog(on_event or (lambda event: None), journal),
                               network_disabled)
        except EngineLost:
            raise
        except BaseException:
            journal.discard()
            raise
        journal.discard()
        return info

    def _build(self, context: Path, tag: str, labels: dict[str, str], log: BuildLog,
               network_disabled: bool) -> ImageInfo:
        import docker

        with self._talking(f"build {context} as {tag}"):
            try:
                stream = self.api.build(path=str(context), rm=True, forcerm=True, decode=True, labels=labels,
                                        pull=False, nocache=False,
                                        network_mode="none" if network_disabled else None)
                for item in stream:
                    log.feed(item)
            except KeyboardInterrupt:
                self._cancel_build(log.started)
                raise
            except docker.errors.APIError as exc:
                raise EngineRefused(f"the engine refused the build: {said(exc)}.",
                                    hint="check the Dockerfile in the build context") from None
        if log.error is not None:
            where = f"step {log.step_label} ({log.step_text})" if log.step_label else "before the first step"
            raise BuildStepFailed(f"the image build failed at {where}: {log.error}.",
                                  hint="the last lines of that step's log are shown above; --verbose streams "
                                       "the whole build log",
                                  step=log.step_text, log_tail=tuple(log.tail))
        if log.image_id is None:
            raise EngineLost(f"the engine at {self.endpoint} ended the build without naming an image.",
                             hint="check that it is still running, then try again with --verbose")
        self.tag(log.image_id, tag)
        info = self.image(log.image_id)
        assert info is not None
        return info

    def _cancel_build(self, started: list[str]) -> None:
        """Closes the connection (the engine cancels the build), then removes the builder's containers."""
        self.close()
        for container_id in started:
            with contextlib.suppress(Exception):
                self.remove_container(container_id)
        self.close()

    def gpu_runtime_available(self) -> bool:
        with self._talking("info (GPU runtimes)"):
            info = self.api.info()
        return offers_gpus(info, local=self.endpoint.startswith("unix://"))

    def containers(self, label: str) -> list[str]:
        with self._talking(f"list containers {label}"):
            found = self.api.containers(all=True, filters={"label": label})
        return [str(c["Id"]) for c in found]

    def find_containers(self, label: str) -> list[ContainerInfo]:
        with self._talking(f"list containers {label}"):
            found = self.api.containers(all=True, filters={"label": label})
        return [ContainerInfo(id=str(c["Id"]), labels=dict(c.get("Labels") or {})) for c in found]

    def remove_leftover_image(self, image_id: str) -> bool:
        import docker

        with self._talking(f"remove leftover image {image_id[:19]}"):
            try:
                if self.api.inspect_image(image_id).get("RepoTags"):
                    return False  # tagged since (a later build took it as a cache hit and finished)
                self.api.remove_image(image_id, force=False, noprune=False)
            except docker.errors.NotFound:
                return False
            except docker.errors.APIError as exc:
                if exc.status_code == 409:  # a container or a child image uses it: not a leftover any more
                    return False
                raise
        return True

    def find_images(self, label: str) -> list[ImageInfo]:
        with self._talking(f"list images {label}"):
            found = self.api.images(filters={"label": label})
        found = sorted(found, key=lambda item: int(item.get("Created") or 0), reverse=True)
        return [ImageInfo(id=str(item.get("Id", "")),
                          tags=tuple(familiar(str(t)) for t in item.get("RepoTags") or () if t != "<none>:<none>"),
                          labels=dict(item.get("Labels") or {}), size=item.get("Size")) for item in found]

    def remove_container(self, container_id: str) -> None:
        import docker

        with self._talking(f"remove container {container_id[:12]}"), contextlib.suppress(docker.errors.NotFound):
            try:
                self.api.remove_container(container_id, force=True, v=True)
            except docker.errors.APIError as exc:
                if exc.status_code != 409:  # 409: removal already in progress
                    raise

    def run(self, spec: RunSpec, *, on_output: OutputCallback | None = None) -> RunResult:
        import docker

        argv = shlex.join((*(spec.entrypoint or ()), *spec.command))
        with self._talking(f"create container from {spec.image}: {argv}"):
            try:
                container_id = self._create_with_init(spec)
            except docker.errors.ImageNotFound:
                raise ImageMissing(f"the engine has no image {spec.image}.",
                                   hint="build it first with `envcap build`") from None
            except docker.errors.APIError as exc:
                raise ContainerFailed(f"the engine could not create a container from {spec.image}: "
                                      f"{said(exc)}.", hint=self._container_hint(spec, said(exc))) from None
        try:
            result = self._run_created(container_id, spec, on_output)
            if spec.commit is not None and result.exit_code == 0:
                result = dataclasses.replace(result, committed=self._commit(container_id, spec.image, spec.commit))
            return result
        finally:
            self._remove_despite_interrupts(container_id)

    def _image_config(self, image: str) -> dict[str, Any]:
        return dict(self.api.inspect_image(image).get("Config") or {})

    def _commit(self, container_id: str, image: str, commit: Commit) -> ImageInfo:
        """``docker commit`` with the image's own entrypoint, command, user and working folder put back.

        The container ran a script as root; without this the image would start that script. An
        empty command would make the engine take the container's back, so an image with none gets
        ``python3`` (the final image sets its own).
        """
        with self._talking(f"commit {container_id[:12]} as {commit.repository}:{commit.tag}"):
            config = self._image_config(image)
            changes = [f"ENTRYPOINT {json.dumps(list(config['Entrypoint']))}"] if config.get("Entrypoint") else []
            changes += [f"CMD {json.dumps(list(config.get('Cmd') or ['python3']))}",
                       f"USER {config.get('User') or 'root'}",
                       f"WORKDIR {config.get('WorkingDir') or '/'}"]
            # The container's labels are merged into the image's and none can be deleted: the owner (host and
            # process of this run) is blanked so an image never names the machine it was made on.
            labels = {OWNER_LABEL: "", **commit.labels}
            changes += [f"LABEL {json.dumps(name)}={json.dumps(value)}" for name, value in labels.items()]
            made = self.api.commit(container_id, repository=commit.repository, tag=commit.tag, changes=changes)
            return image_info(self.api.inspect_image(str(made["Id"])))

    # -- run helpers ------------------------------------------------------------------------
    def _create_with_init(self, spec: RunSpec) -> str:
        """Creates the container; on a Podman without catatonit, again under envcap's stand-in init.

        Why try first: whether the engine's host has the init binary cannot be asked through the API,
        and the failed create costs a few milliseconds once per engine (the answer is remembered).
        """
        import docker

        try:
            return self._create(spec)
        except docker.errors.APIError as exc:
            if not spec.init or self._stand_in_init or _init.INIT_MISSING not in said(exc):
                raise
        LOGGER.debug("%s has no init binary (%s): running under envcap's stand-in init", self.endpoint,
                     "catatonit" if self.flavour() == "podman" else "docker-init")
        self._stand_in_init = True
        return self._create(spec)

    def _container_hint(self, spec: RunSpec, problem: str) -> str:
        if spec.gpus:
            return "for --gpus, the engine needs the NVIDIA container toolkit (a 'nvidia' runtime or CDI devices)"
        if spec.init and self._stand_in_init and _init.ENTRYPOINT[0] in problem:
            return ("Podman has no init binary here, and envcap's stand-in needs python3 in the image; install "
                    "catatonit where Podman runs (`apt-get install catatonit`)")
        return "check the image and the run's options"

    def _create(self, spec: RunSpec) -> str:
        return create_container(self.api, spec, stand_in_init=self._stand_in_init,
                                image_config=lambda: self._image_config(spec.image))

    def _run_created(self, container_id: str, spec: RunSpec, on_output: OutputCallback | None) -> RunResult:
        def could_not_start(exc: Exception) -> ContainerFailed:
            return ContainerFailed(f"the engine could not start a container from {spec.image}: {said(exc)}.",
                                   hint=self._container_hint(spec, said(exc)))

        with self._talking(f"attach and start {container_id[:12]}"):
            return run_attached(self.api, container_id, spec, on_output, could_not_start)

    def _remove_despite_interrupts(self, container_id: str) -> None:
        """Removal must happen even when Ctrl-C is pressed again meanwhile (it takes well under a second)."""
        for _ in range(3):
            try:
                self.remove_container(container_id)
                return
            except KeyboardInterrupt:
                continue
            except EngineError:  # a container we cannot remove must not hide the run's result
                return
