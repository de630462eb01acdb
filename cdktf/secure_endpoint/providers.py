"""The google provider, and google-beta beside it for the one resource that needs a beta field.

`default_uri_disabled` on Cloud Run services reached the GA provider only in 7.6; provider 6.50
has it in google-beta alone. The prebuilt google-beta bindings would add seconds and half a
gigabyte to every synth for one attribute, so google-beta is declared here as a plain provider
block, pinned to the google provider's own version, and the resource that needs it names it and
sets the attribute by override.
"""

from cdktf import TerraformProvider, TerraformProviderGeneratorMetadata
from cdktf_cdktf_provider_google.provider import GoogleProvider
from constructs import Construct

BETA = "google-beta"
BETA_SOURCE = "hashicorp/google-beta"


class GoogleBetaProvider(TerraformProvider):
    """`provider "google-beta"` with the project and region of `google`, at google's version."""

    def __init__(self, scope: Construct, id: str, *, google: GoogleProvider, project: str, region: str):
        super().__init__(
            scope,
            id,
            terraform_resource_type=BETA,
            terraform_generator_metadata=TerraformProviderGeneratorMetadata(
                provider_name=BETA, provider_version=google.terraform_generator_metadata.provider_version
            ),
            terraform_provider_source=BETA_SOURCE,
        )
        self._attributes = {"project": project, "region": region}

    def _synthesize_attributes(self) -> dict:
        return dict(self._attributes)

    def _synthesize_hcl_attributes(self) -> dict:
        return {
            name: {"value": value, "isBlock": False, "type": "simple", "storageClassType": "string"}
            for name, value in self._attributes.items()
        }


def google_providers(
    scope: Construct, *, project: str, region: str
) -> tuple[GoogleProvider, GoogleBetaProvider]:
    google = GoogleProvider(scope, "google", project=project, region=region)
    return google, GoogleBetaProvider(scope, BETA, google=google, project=project, region=region)
