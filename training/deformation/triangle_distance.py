"""Exact squared distance from points to triangles (system.md §2.5 step 1, the quantity kaolin's
point_to_mesh_distance returns), in a form that evaluates many point-triangle pairs at once."""

import torch


def face_rows(a, b, c):
    """Per-triangle constants for sq_distance_from_rows: vertices a, b, c [..., 3] -> [20, ...].

    Rows: a (3), ab = b - a (3), ac = c - a (3), unit normal (3; zero if degenerate), |ab|^2, |ac|^2,
    ab.ac, |bc|^2, their inverses for the three edges (0 for a zero-length edge), and the squared
    doubled area |ab|^2 |ac|^2 - (ab.ac)^2 (-1 if degenerate, which disables the face-interior case).
    """
    ab, ac = b - a, c - a
    ab2, ac2, abac = (ab * ab).sum(-1), (ac * ac).sum(-1), (ab * ac).sum(-1)
    bc2 = ((c - b) ** 2).sum(-1)
    area2 = ab2 * ac2 - abac * abac
    normal = torch.nn.functional.normalize(torch.cross(ab, ac, dim=-1), dim=-1)
    normal = torch.where((area2 > 0)[..., None], normal, 0)
    inverse = [torch.where(s > 0, 1 / s.clamp_min(torch.finfo(s.dtype).tiny), 0) for s in (ab2, ac2, bc2)]
    area2 = torch.where(area2 > 0, area2, -1)
    return torch.stack([*a.unbind(-1), *ab.unbind(-1), *ac.unbind(-1), *normal.unbind(-1),
                        ab2, ac2, abac, bc2, *inverse, area2])


def dot3(u, v):
    """Dot product of two 3-vectors given as coordinate triples of broadcastable tensors."""
    return (u[0] * v[0]).addcmul_(u[1], v[1]).addcmul_(u[2], v[2])


def _segment_sq(p2, proj, inv_len2, len2):
    """|p - t e|^2 with t = clamp(proj / |e|^2, 0, 1), from |p|^2, proj = p.e and |e|^2."""
    t = (proj * inv_len2).clamp_(0, 1)
    return (t * len2).sub_(proj).sub_(proj).mul_(t).add_(p2)


def sq_distance_from_rows(p, rows):
    """Squared point-triangle distance: p = (x, y, z) tensors, rows = face_rows(...) -> [...] broadcast.

    The closest point is in the face interior when the projection's barycentric coordinates are all
    non-negative (distance = height above the plane), otherwise on the nearest of the three edges.
    Branch-free (a 0/1 factor selects the case): torch.where is slow on the CPU.
    """
    ax, ay, az, abx, aby, abz, acx, acy, acz, nx, ny, nz, ab2, ac2, abac, bc2, iab2, iac2, ibc2, area2 = rows
    ap = (p[0] - ax, p[1] - ay, p[2] - az)
    d1, d2 = dot3(ap, (abx, aby, abz)), dot3(ap, (acx, acy, acz))
    height, ap2 = dot3(ap, (nx, ny, nz)), dot3(ap, ap)
    vb = (ac2 * d1).sub_(abac * d2)  # area2 * barycentric weight of b
    vc = (ab2 * d2).sub_(abac * d1)  # area2 * barycentric weight of c
    outside = torch.minimum(torch.minimum(vb, vc), area2 - vb - vc) < 0
    edge = torch.minimum(_segment_sq(ap2, d1, iab2, ab2), _segment_sq(ap2, d2, iac2, ac2))
    e = (d2 - d1).sub_(abac).add_(ab2)  # (p - b).(c - b)
    edge = torch.minimum(edge, _segment_sq((ap2 - 2 * d1).add_(ab2), e, ibc2, bc2))
    height = height.mul_(height)
    return edge.sub_(height).clamp_(min=0).mul_(outside).add_(height)


def point_triangle_sq_distance(points, a, b, c):
    """Squared Euclidean distance from points to triangles (a, b, c); all [..., 3], broadcast together."""
    points, a, b, c = torch.broadcast_tensors(points, a, b, c)
    rows = face_rows(a, b, c)
    return sq_distance_from_rows(points.unbind(-1), rows)
