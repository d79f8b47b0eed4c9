"""SMPL-guided deformation: SMPL file loading (smpl_io), the procedural stand-in body
(procedural_body, procedural_mesh), the posable canonical body (body_model) and the warp of
render samples from posed to canonical space."""
