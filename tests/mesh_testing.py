"""Query points shared by the nearest-triangle search tests."""
import torch


def query_points(vertices, faces, rng, n_surface):
    """On-surface and near (n_surface each), far, mid-range and at-vertex query points [P, 3] of vertices' dtype."""
    tri = vertices[faces]
    pick = torch.tensor(rng.integers(0, len(faces), n_surface))
    bary = torch.tensor(rng.dirichlet([1.0, 1.0, 1.0], n_surface), dtype=vertices.dtype)
    on_surface = (bary[:, :, None] * tri[pick]).sum(1)
    near = on_surface + 0.02 * torch.tensor(rng.standard_normal((n_surface, 3)), dtype=vertices.dtype)
    far = torch.tensor(rng.uniform(-2, 2, (200, 3)), dtype=vertices.dtype)
    middle = torch.tensor(rng.uniform(-0.6, 0.6, (300, 3)), dtype=vertices.dtype)
    at_vertex = vertices[torch.tensor(rng.integers(0, len(vertices), 100))]
    return torch.cat([on_surface, near, far, middle, at_vertex])
