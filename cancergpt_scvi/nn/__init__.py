"""Neural-network building blocks of CancerGPT."""

from ._decoders import ExpressionDecoder, MVCDecoder
from ._domain_adversary import DomainAdversary
from ._domain_discriminator import DomainDiscriminator
from ._encoders import ContinuousValueEncoder, GeneEncoder
from ._standardization import Standardization
from ._transformer import SelfAttention, TransformerEncoder, TransformerLayer

__all__ = [
    "ContinuousValueEncoder",
    "DomainAdversary",
    "DomainDiscriminator",
    "ExpressionDecoder",
    "GeneEncoder",
    "MVCDecoder",
    "SelfAttention",
    "Standardization",
    "TransformerEncoder",
    "TransformerLayer",
]
