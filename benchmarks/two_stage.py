"""What benchmarks/ae_latent.py and benchmarks/copy_check.py share: how a two-stage model's G is sampled
from the training images' latents, and the 32-px images its copy ratio is measured on."""
import torch
import torch.nn.functional as F


def latent_gaussian(L: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean and Cholesky factor of one Gaussian fitted to the latents ``L`` (N x nz)."""
    return L.mean(0), torch.linalg.cholesky(torch.cov(L.T) + 1e-5 * torch.eye(L.shape[1]))


def latent_samplings(L: torch.Tensor, n: int = 1000, seed: int = 123) -> dict[str, torch.Tensor]:
    """Latents for ``n`` samples each way, from the training images' latents ``L`` (N x nz): ``gauss`` (one
    Gaussian fitted to L), ``kde0.5``/``kde0.25`` (a training image's latent plus that fraction of the
    Gaussian's spread), ``recon`` (the first n images' own latents), ``prior`` (N(0, I), as a GAN samples)."""
    nz = L.shape[1]
    mu, chol = latent_gaussian(L)
    g = torch.Generator().manual_seed(seed)
    e = torch.randn(n, nz, generator=g)
    idx = torch.randint(0, L.shape[0], (n,), generator=g)
    return {"gauss": mu + e @ chol.T, "kde0.5": L[idx] + 0.5 * e @ chol.T, "kde0.25": L[idx] + 0.25 * e @ chol.T,
            "recon": L[:n], "prior": e}


def pixels32(images: torch.Tensor):
    """Images in [-1, 1] shrunk to 32 px, one row each: where a blurred copy is still near its original."""
    return F.interpolate(images.float(), size=32, mode="area").flatten(1).numpy()
