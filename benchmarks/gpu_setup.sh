# Source this on a GPU machine from the repository root: installs the carried wheels (.whl/: gsplat,
# lpips, zstandard) into /tmp/site, restores a carried gsplat CUDA build (gpu_cache/gsplat_cuda.so) so
# gsplat does not recompile its kernels, and puts the project on PYTHONPATH.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD
export PYTHONUNBUFFERED=1
if [ -f gpu_cache/gsplat_cuda.so ]; then
  ext_dir=$(python3 -c "import torch.utils.cpp_extension as c; print(c._get_build_directory('gsplat_cuda', False))" 2>/dev/null)
  mkdir -p "$ext_dir" && cp gpu_cache/gsplat_cuda.so "$ext_dir/"
fi
