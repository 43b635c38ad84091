# After gsplat has compiled its kernels, copy the build to $OUT so the next GPU session can carry it back.
so=$(find ~/.cache/torch_extensions -name 'gsplat_cuda.so' 2>/dev/null | head -1)
[ -n "$so" ] && cp "$so" "$OUT/gsplat_cuda.so" && echo "saved $so"
