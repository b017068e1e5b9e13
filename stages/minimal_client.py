import ssl
import urllib.request

context = ssl.create_default_context(cafile="certs/ca.crt")      # trust our CA for the server
context.load_cert_chain("certs/client.crt", "certs/client.key")  # and show our certificate
with urllib.request.urlopen("https://localhost:3000/", context=context) as response:
    print(response.read().decode(), end="")
