"""IMAGE as a deploy sees it: pinned by digest, or a tag that only a registry can turn into one.

A tag is a name that moves: `:latest` deployed twice is the same string to Terraform, so a new
build under it never rolls out, and two applies of the same code can run different builds.
"""

import re
from dataclasses import dataclass

_ARTIFACT_REGISTRY = re.compile(
    r"^(?P<location>[a-z0-9-]+)-docker\.pkg\.dev/(?P<project>[^/]+)/(?P<repository>[^/]+)/"
    r"(?P<name>[^:@]+)(?::(?P<tag>[^:@/]+))?$"
)


@dataclass(frozen=True)
class ArtifactRegistryImage:
    """A tagged (or untagged: the newest) image in an Artifact Registry Docker repository."""

    location: str
    project: str
    repository: str
    name: str
    tag: str | None

    @property
    def image_name(self) -> str:
        """What `google_artifact_registry_docker_image` takes: the name within the repository."""
        return f"{self.name}:{self.tag}" if self.tag else self.name


def is_pinned(image: str) -> bool:
    return "@sha256:" in image


def artifact_registry_image(image: str) -> ArtifactRegistryImage | None:
    """The parts of an Artifact Registry image given by tag; None for a digest or another registry."""
    match = _ARTIFACT_REGISTRY.match(image)
    if is_pinned(image) or not match:
        return None
    return ArtifactRegistryImage(**match.groupdict())


def tag_warning(image: str) -> str | None:
    """What a user should know about an IMAGE given by tag; None when it is pinned by digest."""
    if is_pinned(image):
        return None
    if artifact_registry_image(image):
        return (
            f"IMAGE {image} is given by tag, not by digest; each `make deploy` resolves it "
            "to the digest it points at then, so whatever was pushed under it last is what rolls out. "
            "Give IMAGE as ...@sha256:<digest> to deploy exactly one build."
        )
    return (
        f"IMAGE {image} names a tag outside Artifact Registry, which the deploy cannot "
        "resolve to a digest: a new build pushed under the same tag will not roll out. "
        "Give IMAGE as ...@sha256:<digest>."
    )
